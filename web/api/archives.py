"""Archives: archive a list of URLs or sweep a portal; a resource's archival record; broken links."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from flask import Response, jsonify, redirect, request

from exporter import access, jobs, submissions
from exporter.errors import InvalidRequest, NotFound
from exporter.submissions import ARCHIVE_KINDS

from . import bp
from .auth import client_ip, ctx, current_principal, require
from .errors import ApiError
from .exports import check_rate, create_response, job_view
from .validation import http_url, identifier, json_object, optional_text, query_choice, string_list

# Issue 4's archiver, wired here: "module:function".
ARCHIVAL_RECORD = "exporter.archiver.archive:archival_record"  # (ctx, resource_id) -> dict
BROKEN_LINKS = "exporter.archiver.reports:broken_links"  # (ctx, organization=None) -> dict
BROKEN_LINKS_CSV = "exporter.archiver.reports:broken_links_csv"  # (report dict) -> str
GET_PORTAL = "exporter.archiver.portals:get_portal"  # (ctx, name or id) -> Portal; NotFound

ARCHIVE_FIELDS = {"urls", "portal", "description", "callbackURLs"}
MAX_URLS = 1000


def archiver(name: str) -> Callable:
    module, _, attr = name.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        raise ApiError(404, "the archiver is not part of this installation") from None


@bp.post("/archives")
@require("operator")
def create_archive():
    principal = current_principal()
    body = json_object(ARCHIVE_FIELDS)
    if ("urls" in body) == ("portal" in body):
        raise InvalidRequest("give either urls (a list of URLs to archive) or portal (a registered portal to sweep)", field="urls")
    if "urls" in body:
        urls = [http_url(u, f"urls[{i}]") for i, u in enumerate(string_list(body, "urls", MAX_URLS, required=True))]
        kind, params, target = ARCHIVE_KINDS["urls"], {"urls": urls}, f"{len(urls)} URL(s)"
    else:
        name = str(identifier(body["portal"], "portal"))
        try:
            portal = archiver(GET_PORTAL)(ctx(), name)
        except NotFound as exc:
            raise ApiError(404, str(exc), "portal") from None
        kind, params, target = ARCHIVE_KINDS["portal"], {"portal": portal.name}, f"portal {portal.name}"
    description = optional_text(body, "description", 1000)
    callbacks = string_list(body, "callbackURLs", 20)
    check_rate(principal)
    sub = submissions.request_job(ctx(), kind, params, requested_by=principal.actor, description=description, callback_urls=callbacks)
    access.audit(ctx(), principal, "archive.create", job_id=sub.job.id, target=target, ip=client_ip(), detail={"outcome": sub.outcome})
    return create_response(sub, principal)


@bp.get("/archives/<job_id>")
@require()
def get_archive(job_id: str):
    principal = current_principal()
    try:
        job = jobs.get(ctx(), job_id)
    except NotFound:
        job = None
    if job is None or job.kind not in ARCHIVE_KINDS.values() or not access.can_see(principal, job):
        raise ApiError(404, f"no archive job {job_id}")
    view = job_view(job, principal)
    view["result"] = job.result
    return jsonify(view)


@bp.get("/resources/<resource_id>")
@require("operator", "read_only")
def get_resource(resource_id: str):
    record = archiver(ARCHIVAL_RECORD)
    try:
        return jsonify(record(ctx(), resource_id))
    except NotFound as exc:
        raise ApiError(404, str(exc)) from None


@bp.get("/resources/<resource_id>/download")
def download_resource(resource_id: str):
    """302 to the latest stored copy of a resource: the archive's public cache URL, no token
    needed, except for a resource of a private dataset: operators only, 404 to anyone else."""
    principal = current_principal()
    try:
        record = archiver(ARCHIVAL_RECORD)(ctx(), resource_id, versions=False)
    except NotFound:
        record = None
    if record is None or (record["resource"].get("private") and not (principal and principal.role == "operator")):
        raise ApiError(404, f"no archive resource {resource_id}")
    key = (record.get("archival") or {}).get("cache_key")
    if not key:
        raise ApiError(404, f"resource {resource_id} has no stored copy (yet)")
    filename = key.rsplit("/", 1)[-1]
    url = ctx().storage.download_url(key, ctx().settings.download_url_ttl, filename)
    access.audit(ctx(), principal, "resource.download", target=key, ip=client_ip(), detail={"resource": resource_id})
    return redirect(url, code=302)


@bp.get("/reports/broken-links")
@require("operator", "read_only")
def broken_links():
    fmt = query_choice("format", ("json", "csv")) or "json"
    organization = request.args.get("organization") or None
    report = archiver(BROKEN_LINKS)(ctx(), organization=organization)
    if fmt == "csv":
        text = archiver(BROKEN_LINKS_CSV)(report)
        return Response(text, mimetype="text/csv", headers={"Content-Disposition": 'attachment; filename="broken-links.csv"'})
    return jsonify(report)

