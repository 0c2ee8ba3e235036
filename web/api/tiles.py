"""MapColonies' export-service routes, so their clients can switch: `POST /create/roi` and
`GET /taskStatus/{jobId}` (`GET /storage` already fits). The shapes live in exporter.tiles.mapcolonies."""

from __future__ import annotations

from exporter import access, jobs, submissions
from exporter.errors import NotFound
from exporter.tiles import layers, mapcolonies
from exporter.tiles.requests import KIND, normalize_tiles_request

from . import bp, schemas
from .auth import client_ip, ctx, current_principal, require
from .errors import ApiError
from .exports import check_rate


@bp.post("/create/roi")
@require("operator")
@bp.arguments(schemas.RoiRequest)
@bp.response(200, schemas.RoiJob, description="In-Progress (a new or joined job) or Completed (answered from cache).")
@bp.fails(429, (404, "No such tile layer."), (507, "The GeoPackage's estimated size exceeds the free storage."))
def create_roi(body: dict):
    """Request a GeoPackage of a layer's tiles in a region, in MapColonies' request and answer shapes."""
    principal = current_principal()
    try:  # as theirs: a dbId that names no layer is a 404
        layers.get_layer(ctx(), body["dbId"].strip())
    except NotFound as exc:
        raise ApiError(404, str(exc), "dbId") from None
    params = normalize_tiles_request({k: v for k, v in body.items() if k in ("dbId", "roi", "crs")}, ctx())
    check_rate(principal)
    sub = submissions.request_job(ctx(), KIND, params, requested_by=principal.actor, description=body.get("description"), callback_urls=body.get("callbackURLs") or [])
    access.audit(ctx(), principal, "export.create", job_id=sub.job.id, target=f"tiles layer={params['layer']}", ip=client_ip(), detail={"outcome": sub.outcome, "route": "create/roi"})
    return mapcolonies.create_response(ctx(), sub, principal)


def _tiles_job(job_id: str):
    principal = current_principal()
    try:
        job = jobs.get(ctx(), job_id)
    except NotFound:
        job = None
    if job is None or job.kind != KIND or not access.can_see(principal, job):
        raise ApiError(404, f"no tiles export {job_id}")
    return job, principal


@bp.get("/taskStatus/<id:jobId>")
@bp.response(200, schemas.TaskStatus, description="The job's percentage and status.")
@bp.fails(404)
@require()
def task_status(jobId: str):
    """A tiles export's percentage and status (In-Progress, Completed or Failed)."""
    job, _ = _tiles_job(jobId)
    return mapcolonies.task_status(job)


@bp.get("/create/roi/<id:jobId>")
@bp.response(200, schemas.RoiJob, description="The job in MapColonies' shapes.")
@bp.fails(404)
@require()
def get_roi(jobId: str):
    """A tiles export in MapColonies' shapes: In-Progress with its percentage, Completed with links, or Failed."""
    job, principal = _tiles_job(jobId)
    return mapcolonies.status_response(ctx(), job, principal)
