"""Publications: an agency's public export published to Zenodo as a new version of its record."""

from __future__ import annotations

from flask import request

from exporter import access, jobs
from exporter.errors import ConfigError, NotFound
from exporter.publish import zenodo

from . import bp, schemas
from .auth import client_ip, ctx, current_principal, require
from .errors import ApiError
from .exports import check_rate


@bp.post("/publications")
@require("operator")
@bp.arguments(schemas.PublicationRequest, example={"agency": "https://ror.org/038sjwq14"})
@bp.response(201, schemas.Publication, description="The publication job (an equal request joins the one there).")
@bp.fails(429, (404, "No such agency, or no export of it to publish."), (503, "Publication to Zenodo is not configured here."))
def create_publication(body: dict):
    """Publish an agency's full public export to Zenodo: the first makes the concept record, every
    later one a new version of it; an export with nothing new answers `unchanged`."""
    principal = current_principal()
    check_rate(principal)
    try:
        job = zenodo.request_publication(
            ctx(), str(body["agency"]), body.get("export"), requested_by=principal.actor, description=body.get("description"), callback_urls=body.get("callbackURLs") or [],
        )
    except ConfigError as exc:
        raise ApiError(503, str(exc)) from None
    access.audit(ctx(), principal, "publication.create", job_id=job.id, target=f"agency={body['agency']}", ip=client_ip())
    return zenodo.publication_view(job), 201, {"Location": f"{request.script_root}{request.path.rstrip('/')}/{job.id}"}


@bp.get("/publications/<id:publicationId>")
@bp.response(200, schemas.Publication, description="The publication.")
@bp.fails(404)
@require("operator", "read_only")
def get_publication(publicationId: str):
    """A publication's status, and once published its record id, DOI, concept DOI, version and files (with md5)."""
    try:
        job = jobs.get(ctx(), publicationId)
    except NotFound:
        job = None
    if job is None or job.kind != zenodo.KIND:
        raise ApiError(404, f"no publication {publicationId}")
    return zenodo.publication_view(job)
