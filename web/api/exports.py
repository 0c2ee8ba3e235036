"""Exports: request one (duplicates joined, admission checked), watch it, cancel it, download it."""

from __future__ import annotations

import math

from flask import jsonify, redirect, request
from sqlalchemy import func, select

from exporter import access, jobs, ratelimit, submissions, visibility
from exporter.access import Principal
from exporter.errors import InvalidRequest, NotFound
from exporter.models import FINAL_STATUSES, Job
from exporter.submissions import EXPORT_KINDS
from exporter.visibility import API_STATUS, JOB_STATUS, PRIVATE_KINDS, pick_artifact

from . import bp
from .auth import client_ip, ctx, current_principal, require
from .errors import ApiError
from .validation import choice, identifier, json_object, optional_text, query_choice, query_int, string_list

EXPORT_FIELDS = {"kind", "scope", "mode", "format", "description", "callbackURLs"}
MODES = ("full", "incremental")
FORMATS = ("zip", "tar.gz")
MAX_CALLBACKS = 20


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
        "expirationTime": _iso(job.expires_at),
        "errorReason": job.error if job.status == "failed" else None,
        "createdAt": _iso(job.created_at),
        "finishedAt": _iso(job.finished_at),
    }


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def check_rate(principal: Principal) -> None:
    rate = ctx().settings.api_rate_limit
    wait = ratelimit.take(ctx(), f"create:token:{principal.token_id}", rate)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise ApiError(429, f"too many jobs requested with this token (limit {rate.count} per {rate.seconds:g} s); retry in {seconds} s", None, {"Retry-After": str(seconds)})


def create_response(sub: submissions.Submission, principal: Principal):
    body = job_view(sub.job, principal)
    body["isDuplicated"] = sub.is_duplicate
    response = jsonify(body)
    response.status_code = 200 if sub.is_duplicate else 201
    response.headers["Location"] = f"{request.script_root}{request.path.rstrip('/')}/{sub.job.id}"
    return response


@bp.post("/exports")
@require("operator", "service_point")
def create_export():
    principal = current_principal()
    body = json_object(EXPORT_FIELDS)
    kind = choice(body, "kind", tuple(EXPORT_KINDS))
    scope = body.get("scope")
    if not isinstance(scope, dict):
        raise InvalidRequest("scope is required: {\"agency\": id} for a public export, {\"servicePoint\": id} for a private one", field="scope")
    need = "agency" if kind == "public" else "servicePoint"
    extra = sorted(set(scope) - {need})
    if extra:
        raise InvalidRequest(f"a {kind} export's scope takes only {need}, not {extra[0]}", field=f"scope.{extra[0]}")
    if need not in scope:
        raise InvalidRequest(f"a {kind} export needs scope.{need}", field=f"scope.{need}")
    scope = {need: identifier(scope[need], f"scope.{need}")}
    mode = choice(body, "mode", MODES, "full")
    fmt = choice(body, "format", FORMATS, "zip")
    description = optional_text(body, "description", 1000)
    callbacks = string_list(body, "callbackURLs", MAX_CALLBACKS)
    if principal.role == "service_point":
        if kind != "private":
            raise ApiError(403, "a service point token may request only its own private export", "kind")
        if str(scope["servicePoint"]) != principal.service_point_id:
            raise ApiError(403, f"this token belongs to service point {principal.service_point_id}; it may not export another one", "scope.servicePoint")
    check_rate(principal)
    job_kind, params = submissions.export_params(kind, scope, mode, fmt)
    sub = submissions.request_job(ctx(), job_kind, params, requested_by=principal.actor, description=description, callback_urls=callbacks)
    access.audit(ctx(), principal, "export.create", job_id=sub.job.id, target=f"{kind} {need}={scope[need]}", ip=client_ip(), detail={"outcome": sub.outcome, "mode": mode, "format": fmt})
    return create_response(sub, principal)


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
@require()
def list_exports():
    principal = current_principal()
    status = query_choice("status", tuple(JOB_STATUS))
    kind = query_choice("kind", tuple(EXPORT_KINDS))
    limit = query_int("limit", 20, 1, 200)
    offset = query_int("offset", 0, 0, 10**9)
    kinds = set(EXPORT_KINDS.values()) if kind is None else {EXPORT_KINDS[kind]}
    query = select(Job)
    if principal.role == "service_point":
        kinds &= PRIVATE_KINDS
        query = query.where(visibility.service_point_column() == principal.service_point_id)
    elif principal.role != "operator":
        kinds -= PRIVATE_KINDS
    query = query.where(Job.kind.in_(sorted(kinds)))
    if status:
        query = query.where(Job.status == JOB_STATUS[status])
    with ctx().db.session() as s:
        total = s.scalar(select(func.count()).select_from(query.subquery()))
        from sqlalchemy.orm import selectinload

        rows = list(s.scalars(query.options(selectinload(Job.artifacts)).order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)))
    return jsonify({"items": [job_view(j, principal) for j in rows], "total": total, "limit": limit, "offset": offset})


@bp.get("/exports/<job_id>")
@require()
def get_export(job_id: str):
    principal = current_principal()
    return jsonify(job_view(visible_export(job_id, principal), principal))


@bp.post("/exports/<job_id>/cancel")
@require("operator", "service_point")
def cancel_export(job_id: str):
    principal = current_principal()
    job = visible_export(job_id, principal)
    if job.status in FINAL_STATUSES:
        raise ApiError(409, f"export {job_id} has already ended ({API_STATUS.get(job.status, job.status)}); nothing to cancel", "status")
    job = jobs.cancel(ctx(), job_id)
    access.audit(ctx(), principal, "export.cancel", job_id=job_id, ip=client_ip())
    return jsonify(job_view(job, principal))


@bp.get("/exports/<job_id>/download")
def download_export(job_id: str):
    """302 to an expiring storage URL: public artifacts for anyone, others for who may see the job."""
    which = request.args.get("artifact") or "data"
    signature = request.args.get("signature")
    principal = current_principal()
    try:
        job = jobs.get(ctx(), job_id)
    except NotFound:
        raise ApiError(404, f"no export {job_id}") from None
    if job.kind not in EXPORT_KINDS.values():
        raise ApiError(404, f"no export {job_id}")
    art = pick_artifact(job, which)
    via = None
    if signature is not None:
        try:
            issued_to = access.verify_download_link(ctx(), job_id, which, request.args.get("expires", ""), signature, request.args.get("by"))
        except access.LinkExpired as exc:
            raise ApiError(410, str(exc), exc.field) from None
        except access.LinkInvalid as exc:
            raise ApiError(403, str(exc), exc.field) from None
        via = f"signed link issued to token:{issued_to}" if issued_to is not None else "signed link"
    elif not (art is not None and art.public):
        if principal is None:
            raise ApiError(401, "this download needs an API token (or a signed link from the export's status)", "Authorization", {"WWW-Authenticate": "Bearer"})
        if not access.can_see(principal, job):
            raise ApiError(404, f"no export {job_id}")
    if job.status == "expired" or (art is not None and art.deleted_at is not None):
        raise ApiError(410, f"export {job_id} has expired and its files were deleted; request it again", "jobId")
    if job.status != "succeeded":
        raise ApiError(409, f"export {job_id} is not ready: it is {API_STATUS.get(job.status, job.status)}", "status")
    if art is None:
        raise ApiError(404, f"export {job_id} has no {which!r} file", "artifact")
    url = ctx().storage.download_url(art.key, ctx().settings.download_url_ttl, art.filename)
    access.audit(ctx(), principal, "export.download", job_id=job_id, target=art.key, ip=client_ip(), detail={"artifact": art.name, "via": via or ("public" if principal is None else "token")})
    return redirect(url, code=302)
