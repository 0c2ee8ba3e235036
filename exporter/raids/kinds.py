"""The export job kinds: export_public (one agency) and export_private (one service point)."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest
from ..kinds import JobKind, register
from ..runner import JobRun
from . import export
from .scope import MODES, PRIVATE, PUBLIC, normalize_private, normalize_public


def normalize_schedule(params: dict[str, Any]) -> dict[str, Any]:
    mode = params.pop("mode", "full")
    if params:
        raise InvalidRequest(f"unknown parameter(s): {', '.join(sorted(params))}", field=sorted(params)[0])
    if mode not in MODES:
        raise InvalidRequest(f"mode must be one of {', '.join(MODES)}", field="mode")
    return {"mode": mode}


def run_schedule(job: JobRun) -> dict[str, Any]:
    submitted = export.submit_public_exports(job.ctx, job.params["mode"], requested_by=f"job:{job.job_id}")
    return {"submitted": {j.params["agency"]: j.id for j in submitted}}


register(JobKind(name=PUBLIC, task="exporter.export_public", queue="exports", run=export.run, normalize=normalize_public, description="public export of one registration agency's raids"))
register(JobKind(name=PRIVATE, task="exporter.export_private", queue="exports", run=export.run, normalize=normalize_private, description="private export of one service point's raids"))
register(JobKind(name="export_public_all", task="exporter.export_public_all", queue="exports", run=run_schedule, normalize=normalize_schedule, description="submits a public export for every registration agency (nightly)"))
