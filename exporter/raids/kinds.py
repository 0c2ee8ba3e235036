"""The export job kinds: export_public (one agency) and export_private (one service point)."""

from __future__ import annotations

from .. import orphans
from ..kinds import JobKind, register
from . import export
from .scope import PRIVATE, PUBLIC, normalize_private, normalize_public

register(JobKind(name=PUBLIC, task="exporter.export_public", queue="exports", run=export.run, normalize=normalize_public, description="public export of one registration agency's raids", estimate=export.estimate_size))
register(JobKind(name=PRIVATE, task="exporter.export_private", queue="exports", run=export.run, normalize=normalize_private, description="private export of one service point's raids", estimate=export.estimate_size))
orphans.register("exports/", orphans.artifact_keys)
