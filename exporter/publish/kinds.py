"""The publish family's job kind: publish_zenodo (queue `publish`)."""

from __future__ import annotations

from .. import jobs
from ..kinds import JobKind, register
from . import zenodo

register(JobKind(name=zenodo.KIND, task="exporter.publish_zenodo", queue="publish", run=zenodo.run, normalize=zenodo.normalize, expiry_seconds=0, description="publish a full public export as a version of the agency's Zenodo record"))
jobs.ON_FINAL.append(zenodo.on_export_final)  # a full public export asks for its publication
