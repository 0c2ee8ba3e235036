"""Archives: archive a list of URLs or sweep a portal; a resource's archival record; broken links."""

from __future__ import annotations

from flask import Response, redirect

from exporter import access, jobs, submissions
from exporter.archiver.archive import archival_record
from exporter.archiver.portals import get_portal
from exporter.archiver.reports import broken_links as broken_links_report
from exporter.archiver.reports import broken_links_csv
from exporter.errors import NotFound
from exporter.submissions import ARCHIVE_KINDS

from . import bp, schemas
from .auth import client_ip, ctx, current_principal, require, token_optional
from .errors import ApiError
from .exports import check_rate, created, creates_jobs, job_view


@bp.post("/archives")
@require("operator")
@bp.arguments(schemas.ArchiveRequest, example={"urls": ["https://data.example.org/files/table.csv"], "description": "one table"})
@creates_jobs("No such portal.")
def create_archive(body: dict):
    """Archive a list of URLs, or sweep a registered portal (operator)."""
    principal = current_principal()
    if "urls" in body:
        urls = body["urls"]
        kind, params, target = ARCHIVE_KINDS["urls"], {"urls": urls}, f"{len(urls)} URL(s)"
    else:
        try:
            portal = get_portal(ctx(), str(body["portal"]))
        except NotFound as exc:
            raise ApiError(404, str(exc), "portal") from None
        kind, params, target = ARCHIVE_KINDS["portal"], {"portal": portal.name}, f"portal {portal.name}"
    check_rate(principal)
    sub = submissions.request_job(ctx(), kind, params, requested_by=principal.actor, description=body.get("description"), callback_urls=body.get("callbackURLs") or [])
    access.audit(ctx(), principal, "archive.create", job_id=sub.job.id, target=target, ip=client_ip(), detail={"outcome": sub.outcome})
    return created(sub, principal)


@bp.get("/archives/<id:jobId>")
@bp.response(200, schemas.ArchiveJob, description="The job.")
@bp.fails(404)
@require()
def get_archive(jobId: str):
    """An archive or sweep job's status, progress and result."""
    principal = current_principal()
    try:
        job = jobs.get(ctx(), jobId)
    except NotFound:
        job = None
    if job is None or job.kind not in ARCHIVE_KINDS.values() or not access.can_see(principal, job):
        raise ApiError(404, f"no archive job {jobId}")
    return {**job_view(job, principal), "result": job.result}


@bp.get("/resources/<id:resourceId>")
@bp.response(200, schemas.ResourceRecord, description="The record.")
@bp.fails((404, "No such resource."))
@require("operator", "read_only")
def get_resource(resourceId: str):
    """A resource's archival record and stored versions (one of a private dataset, or one its portal no longer lists: operators only)."""
    try:
        found = archival_record(ctx(), resourceId)
    except NotFound as exc:
        raise ApiError(404, str(exc)) from None
    if not found["resource"].get("open_to_all") and current_principal().role != "operator":
        raise ApiError(404, f"no archive resource {resourceId}")
    return found


@bp.get("/resources/<id:resourceId>/download")
@bp.alt_response(302, description="To an expiring download URL.", headers=schemas.REDIRECT, success=True)
@bp.fails((404, "No such resource, or no stored copy."))
@token_optional
def download_resource(resourceId: str):
    """Redirect to an expiring URL of the resource's latest stored copy (its cache URL).

    No token needed for a resource its portal lists as public; a resource of a private dataset, or
    one its portal no longer lists (made private or withdrawn, maybe), is for operators only: 404 to anyone else.
    """
    principal = current_principal()
    try:
        record = archival_record(ctx(), resourceId, versions=False)
    except NotFound:
        record = None
    if record is None or (not record["resource"].get("open_to_all") and not (principal and principal.role == "operator")):
        raise ApiError(404, f"no archive resource {resourceId}")
    key = (record.get("archival") or {}).get("cache_key")
    if not key:
        raise ApiError(404, f"resource {resourceId} has no stored copy (yet)")
    filename = key.rsplit("/", 1)[-1]
    url = ctx().storage.download_url(key, ctx().settings.download_url_ttl, filename)
    access.audit(ctx(), principal, "resource.download", target=key, ip=client_ip(), detail={"resource": resourceId})
    return redirect(url, code=302)


@bp.get("/reports/broken-links")
@bp.arguments(schemas.BrokenLinksQuery, location="query")
@bp.response(200, schemas.BrokenLinks, description="The report, as JSON or CSV.")
@bp.alt_response(200, schema={"type": "string"}, content_type="text/csv", description="The report, as JSON or CSV.", success=True)
@require("operator", "read_only")
def broken_links(query: dict):
    """Broken links by organization and dataset, as JSON or CSV (resources of private datasets, or no longer listed: for operators only)."""
    report = broken_links_report(ctx(), organization=query.get("organization"), open_only=current_principal().role != "operator")
    if query["format"] == "csv":
        text = broken_links_csv(report)
        return Response(text, mimetype="text/csv", headers={"Content-Disposition": 'attachment; filename="broken-links.csv"'})
    return report
