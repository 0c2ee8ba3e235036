"""The `tiles` job kind (queue `exports`)."""

from __future__ import annotations

from .. import orphans
from ..kinds import JobKind, register
from . import export, mapcolonies, requests

register(JobKind(name=export.KIND, task="exporter.export_tiles", queue="exports", run=export.run, normalize=requests.normalize, description="GeoPackage of the map tiles inside a region of interest",
                 estimate=requests.estimate_size, callback_payload=mapcolonies.callback_payload))
orphans.register("tiles/", orphans.artifact_keys)
