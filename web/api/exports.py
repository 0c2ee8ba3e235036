"""Exports: request one (duplicates joined, admission checked), watch it, cancel it, download it."""

from __future__ import annotations

import math
from contextlib import contextmanager

from flask import redirect, request
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from exporter import access, jobs, ratelimit, submissions, visibility
from exporter.access import Principal
from exporter.errors import InvalidRequest, NotFound
from exporter.models import FINAL_STATUSES, Job
from exporter.submissions import EXPORT_KINDS
from exporter.tiles.requests import normalize_tiles_request
from exporter.visibility import API_STATUS, JOB_STATUS, PRIVATE_KINDS, pick_artifact

from . import bp, schemas
from .auth import client_ip, ctx, current_principal, require, token_optional
from .errors import ApiError


def api_kind(job: Job) -> str:
    for name, kind in EXPORT_KINDS.items():
        if kind == job.kind:
            return name
    for name, kind in submissions.ARCHIVE_KINDS.items():
        if kind == job.kind:
            return name
    return job.kind


def links(job: Job, principal: Principal | None) -> dict[str, str | None] | None:
    """Expiring download links for a succeeded job's data and manifest (None before/after)."""
    return access.download_links(ctx(), job, principal) if job.status == "succeeded" else None


def job_view(job: Job, principal: Principal | None) -> dict:
    """A job as the API shows it (schemas.Job renders it)."""
    params = job.params or {}
    return {
        "jobId": job.id,
        "kind": api_kind(job),
        "status": API_STATUS.get(job.status, job.status),
        "percentage": job.percentage,
        "description": job.description,
        "mode": params.get("mode"),
        "format": params.get("format"),
        "links": links(job, principal),
        "fileSize": visibility.file_size(job) if job.status == "succeeded" else None,
        "expirationTime": job.expires_at,
        "errorReason": job.error if job.status == "failed" else None,
        "createdAt": job.created_at,
        "finishedAt": job.finished_at,
    }


# The domain names an export's scope by its job parameters; the API by the fields of the request.
API_FIELDS = {visibility.AGENCY_PARAM: "scope.agency", visibility.SERVICE_POINT_PARAM: "scope.servicePoint"}


@contextmanager
def named_as_requested(missing: str):
    """Errors of the domain naming the request's field: its API name, and `missing` for a NotFound."""
    try:
        yield
    except InvalidRequest as exc:
        field = API_FIELDS.get(exc.field, exc.field)
        message = str(exc)
        if exc.field and field != exc.field and message.startswith(exc.field):
            message = field + message[len(exc.field):]
        raise InvalidRequest(message, field) from None
    except NotFound as exc:
        raise ApiError(404, str(exc), missing) from None


def check_rate(principal: Principal) -> None:
    rate = ctx().settings.api_rate_limit
    wait = ratelimit.take(ctx(), f"create:token:{principal.token_id}", rate)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise ApiError(429, f"too many jobs requested with this token (limit {rate.count} per {rate.seconds:g} s); retry in {seconds} s", None, {"Retry-After": str(seconds)})


def created(sub: submissions.Submission, principal: Principal):
    """201 and the new job, or 200 and the equal job that answers the request (schemas.CreatedJob)."""
    body = {**job_view(sub.job, principal), "isDuplicated": sub.is_duplicate}
    return body, 200 if sub.is_duplicate else 201, {"Location": f"{request.script_root}{request.path.rstrip('/')}/{sub.job.id}"}


def creates_jobs(not_found: str):
    """Documents a job-creating view: 201 new, 200 duplicate, 404 `not_found`, 429 rate limit."""

    def decorate(view):
        view = bp.fails(429, (404, not_found))(view)
        view = bp.alt_response(200, schema=schemas.CreatedJob, description="An equal job answers this request (isDuplicated).", headers=schemas.LOCATION, success=True)(view)
        return bp.response(201, schemas.CreatedJob, description="A new job.", headers=schemas.LOCATION)(view)

    return decorate


@bp.post("/exports")
@require("operator", "service_point")
@bp.arguments(schemas.ExportRequest, example={"kind": "public", "scope": {"agency": "https://ror.org/038sjwq14"}, "mode": "full", "format": "zip", "description": "nightly"})
@creates_jobs("No such registration agency, service point or tile layer.")
@bp.fails((507, "The export's estimated size exceeds the free storage minus what running jobs still write."))
def create_export(body: dict):
    """Request an export (operator; a service point only its own private one).

    `kind` public or private takes `scope`; `kind` tiles takes `layer` and `roi` (a GeoJSON
    FeatureCollection whose features carry maxResolutionDeg) and makes a GeoPackage, answered
    from cache when a finished export of the layer covers the region.

    An equal request (same kind and canonical parameters, whatever the order or defaults)
    joins a pending/running job, or gets a finished unexpired one at once;
    then `isDuplicated` is true and the answer is 200.
    """
    principal = current_principal()
    kind = body["kind"]
    if kind == "tiles":
        return create_tiles_export(body, principal)
    need = schemas.SCOPE_FIELD[kind]
    scope = {need: body["scope"][need]}
    if principal.role == "service_point":
        if kind != "private":
            raise ApiError(403, "a service point token may request only its own private export", "kind")
        if str(scope["servicePoint"]) != principal.service_point_id:
            raise ApiError(403, f"this token belongs to service point {principal.service_point_id}; it may not export another one", "scope.servicePoint")
    check_rate(principal)
    job_kind, params = submissions.export_params(kind, scope, body["mode"], body["format"])
    with named_as_requested(f"scope.{need}"):
        sub = submissions.request_job(ctx(), job_kind, params, requested_by=principal.actor, description=body.get("description"), callback_urls=body.get("callbackURLs") or [])
    detail = {"outcome": sub.outcome, "mode": body["mode"], "format": body["format"]}
    access.audit(ctx(), principal, "export.create", job_id=sub.job.id, target=f"{kind} {need}={scope[need]}", ip=client_ip(), detail=detail)
    return created(sub, principal)


def create_tiles_export(body: dict, principal: Principal):
    """A GeoPackage of a layer's tiles in a region (operator); the region is checked by the tiles family."""
    if principal.role != "operator":
        raise ApiError(403, "a tiles export needs an operator token", "kind")
    with named_as_requested("layer"):
        params = normalize_tiles_request({"layer": body["layer"], "roi": body["roi"]}, ctx())
    check_rate(principal)
    sub = submissions.request_job(ctx(), "tiles", params, requested_by=principal.actor, description=body.get("description"), callback_urls=body.get("callbackURLs") or [])
    access.audit(ctx(), principal, "export.create", job_id=sub.job.id, target=f"tiles layer={params['layer']}", ip=client_ip(), detail={"outcome": sub.outcome, "tiles": params["tileCount"]})
    return created(sub, principal)


def visible_export(job_id: str, principal: Principal) -> Job:
    """The export job if the caller may see it; anything else is the same 404."""
    try:
        job = jobs.get(ctx(), job_id)
    except NotFound:
        job = None
    if job is None or job.kind not in EXPORT_KINDS.values() or not access.can_see(principal, job):
        raise ApiError(404, f"no export {job_id}")
    return job


@bp.get("/exports")
@bp.arguments(schemas.ExportQuery, location="query")
@bp.response(200, schemas.JobList, description="A page of exports.")
@require()
def list_exports(query: dict):
    """Exports the caller may see, newest first."""
    principal = current_principal()
    kind, status, limit, offset = query.get("kind"), query.get("status"), query["limit"], query["offset"]
    kinds = set(EXPORT_KINDS.values()) if kind is None else {EXPORT_KINDS[kind]}
    select_jobs = select(Job)
    if principal.role == "service_point":
        kinds &= PRIVATE_KINDS
        select_jobs = select_jobs.where(visibility.service_point_column() == principal.service_point_id)
    elif principal.role != "operator":
        kinds -= PRIVATE_KINDS
    select_jobs = select_jobs.where(Job.kind.in_(sorted(kinds)))
    if status:
        select_jobs = select_jobs.where(Job.status == JOB_STATUS[status])
    with ctx().db.session() as s:
        total = s.scalar(select(func.count()).select_from(select_jobs.subquery()))
        rows = list(s.scalars(select_jobs.options(selectinload(Job.artifacts)).order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)))
    return {"items": [job_view(j, principal) for j in rows], "total": total, "limit": limit, "offset": offset}


@bp.get("/exports/<id:jobId>")
@bp.response(200, schemas.Job, description="The job.")
@bp.fails(404)
@require()
def get_export(jobId: str):
    """An export's status, progress, links, size, expiry and error."""
    principal = current_principal()
    return job_view(visible_export(jobId, principal), principal)


@bp.post("/exports/<id:jobId>/cancel")
@bp.response(200, schemas.Job, description="The job.")
@bp.fails(404, (409, "The export has already ended."))
@require("operator", "service_point")
def cancel_export(jobId: str):
    """Cancel a pending or running export."""
    principal = current_principal()
    job = visible_export(jobId, principal)
    if job.status in FINAL_STATUSES:
        raise ApiError(409, f"export {jobId} has already ended ({API_STATUS.get(job.status, job.status)}); nothing to cancel", "status")
    job = jobs.cancel(ctx(), jobId)
    access.audit(ctx(), principal, "export.cancel", job_id=jobId, ip=client_ip())
    return job_view(job, principal)


@bp.get("/exports/<id:jobId>/download")
@bp.arguments(schemas.DownloadQuery, location="query")
@bp.alt_response(302, description="To an expiring download URL.", headers=schemas.REDIRECT, success=True)
@bp.fails(404, (403, "The signed link is not valid."), (409, "The export is not finished."), (410, "The export (or the link) has expired."))
@token_optional
def download_export(query: dict, jobId: str):
    """Redirect to an expiring URL of the export's data (or manifest).

    Public exports need no token; a private one needs the operator or the owning service point's
    token, or a signed link from the export's `links`. Every download is written to the audit log.
    """
    which, signature = query["artifact"], query.get("signature")
    principal = current_principal()
    try:
        job = jobs.get(ctx(), jobId)
    except NotFound:
        raise ApiError(404, f"no export {jobId}") from None
    if job.kind not in EXPORT_KINDS.values():
        raise ApiError(404, f"no export {jobId}")
    art = pick_artifact(job, which)
    via = None
    if signature is not None:
        by = query.get("by")
        try:
            issued_to = access.verify_download_link(ctx(), jobId, which, str(query.get("expires", "")), signature, None if by is None else str(by))
        except access.LinkExpired as exc:
            raise ApiError(410, str(exc), exc.field) from None
        except access.LinkInvalid as exc:
            raise ApiError(403, str(exc), exc.field) from None
        via = f"signed link issued to token:{issued_to}" if issued_to is not None else "signed link"
    elif not (art is not None and art.public):
        if principal is None:
            raise ApiError(401, "this download needs an API token (or a signed link from the export's status)", "Authorization", {"WWW-Authenticate": "Bearer"})
        if not access.can_see(principal, job):
            raise ApiError(404, f"no export {jobId}")
    if job.status == "expired" or (art is not None and art.deleted_at is not None):
        raise ApiError(410, f"export {jobId} has expired and its files were deleted; request it again", "jobId")
    if job.status != "succeeded":
        raise ApiError(409, f"export {jobId} is not ready: it is {API_STATUS.get(job.status, job.status)}", "status")
    if art is None:
        raise ApiError(404, f"export {jobId} has no {which!r} file", "artifact")
    url = ctx().storage.download_url(art.key, ctx().settings.download_url_ttl, art.filename)
    access.audit(ctx(), principal, "export.download", job_id=jobId, target=art.key, ip=client_ip(), detail={"artifact": art.name, "via": via or ("public" if principal is None else "token")})
    return redirect(url, code=302)
