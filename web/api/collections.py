"""Collections: projects whose image collections are polled, converted, approved and published for Zooniverse."""

from __future__ import annotations

from flask import request

from exporter import access
from exporter.access import Principal
from exporter.collections import batches, projects, views
from exporter.errors import NotFound

from . import bp, schemas
from .auth import GRANTS, client_ip, ctx, current_principal, require

READERS = ("operator", "approver", "read_only")
DECIDERS = ("operator", "approver")
OWNER = projects.OWNER  # a project's owner, by its grant token: reads that project and revokes the grant
GRANTS[projects.GRANT_PREFIX] = projects.grant_principal


def _owner(principal: Principal | None) -> str | None:
    """The one project a grant holder may see (None for an API token)."""
    return principal.project if principal is not None and principal.role == OWNER else None


def _project_of_caller(name: str):
    """The project, or a 404 for a grant holder asking for another one (as if it did not exist)."""
    p = projects.project(ctx(), name)
    own = _owner(current_principal())
    if own is not None and p.name != own:
        raise NotFound(f"no collection project {name.strip()!r}")
    return p


@bp.post("/collections/projects")
@require("operator")
@bp.arguments(schemas.CollectionProjectRequest, example={"name": "galaxy-zoo-lsst", "source": "s3://rsp-users/pat/zoo", "ownerEmail": "pat@example.org", "zooniverseProject": "1234"})
@bp.response(201, schemas.CreatedCollectionProject, description="The project, with its grant token (shown this once).")
def create_project(body: dict):
    """Add a project: Exporter polls its source for new files, holds each batch until approved, then publishes it for Zooniverse."""
    p, grant = projects.add_project(
        ctx(), body["name"], body["source"], body["ownerEmail"], owner_name=body.get("ownerName"), zooniverse_project=body.get("zooniverseProject"),
        subject_set=body.get("subjectSet"), callback_url=body.get("callbackURL"),
    )
    access.audit(ctx(), current_principal(), "collections.project.create", target=p.name, ip=client_ip())
    return {**projects.project_view(p), "grantToken": grant}, 201, {"Location": f"{request.script_root}{request.path.rstrip('/')}/{p.name}"}


@bp.get("/collections/projects")
@bp.response(200, schemas.CollectionProjectList, description="Every project.")
@require(*READERS)
def list_projects():
    """The projects, by name."""
    return {"projects": [projects.project_view(p) for p in projects.list_projects(ctx())]}


@bp.get("/collections/projects/<id:projectName>")
@bp.response(200, schemas.CollectionProject, description="The project and its batches.")
@bp.fails(404)
@require(*READERS, grant=OWNER)
def get_project(projectName: str):
    """A project and its batches, newest first (also to its owner, by the project's grant token)."""
    p = _project_of_caller(projectName)
    out = projects.project_view(p)
    out["batches"] = views.list_batches(ctx(), project=p.name)
    return out


@bp.post("/collections/projects/<id:projectName>/revoke-grant")
@bp.response(200, schemas.CollectionProject, description="The project, its grant revoked (the grant token stops working now).")
@bp.fails(404)
@require("operator", grant=OWNER)
def revoke_grant(projectName: str):
    """Revoke the project's grant (its owner, by the grant token itself, or an operator): no poll reads the source again, a batch being retrieved stops at its next file, and the owner is told by e-mail."""
    principal = current_principal()
    p = projects.revoke_grant(ctx(), _project_of_caller(projectName).name, principal.actor)
    access.audit(ctx(), principal, "collections.grant.revoke", target=p.name, ip=client_ip())
    return projects.project_view(p)


@bp.post("/collections/projects/<id:projectName>/poll")
@bp.response(200, schemas.PollAnswer, description="What the poll found; a batch job when there were files no batch held.")
@bp.fails(404)
@require("operator")
def poll_project(projectName: str):
    """Poll the project's source now (the beat does it every COLLECTIONS_POLL_INTERVAL)."""
    result = batches.poll_project(ctx(), projectName)
    access.audit(ctx(), current_principal(), "collections.poll", job_id=result.job_id, target=projectName, ip=client_ip())
    return result.to_dict()


@bp.get("/collections/batches")
@bp.arguments(schemas.BatchQuery, location="query")
@bp.response(200, schemas.CollectionBatchList, description="Batches, newest first (at most 100).")
@bp.fails(404)
@require(*READERS, grant=OWNER)
def list_batches(query: dict):
    """Batches, newest first; by project or state (`awaiting_approval`: what approvers have to decide). A grant token lists its own project's."""
    project = query.get("project")
    own = _owner(current_principal())
    if own is not None:
        project = _project_of_caller(project).name if project else own
    return {"batches": views.list_batches(ctx(), project=project, state=query.get("state"))}


@bp.get("/collections/batches/<id:batchId>")
@bp.response(200, schemas.CollectionBatch, description="The batch, its files, refusals, overlap with other projects (not to the owner) and decisions.")
@bp.fails(404)
@require(*READERS, grant=OWNER)
def get_batch(batchId: str):
    """A batch with its files (metadata, conversion, the reason a file was refused), overlap and decisions; a grant token sees its own project's, without the overlap (other projects' names)."""
    view = views.get_batch(ctx(), batchId)
    own = _owner(current_principal())
    if own is not None:
        if view["project"] != own:
            raise NotFound(f"no collection batch {view['id']}")
        view.pop("overlap")
    return view


@bp.post("/collections/batches/<id:batchId>/approve")
@require(*DECIDERS)
@bp.arguments(schemas.DecisionRequest, example={"note": "data rights checked"})
@bp.response(200, schemas.CollectionBatch, description="The approved batch (its publication job is on its way).")
@bp.fails(404)
def approve_batch(body: dict, batchId: str):
    """Approve a batch awaiting approval: it is published and its owner told (an approver or operator token)."""
    principal = current_principal()
    b = batches.approve(ctx(), batchId, principal.actor, body.get("note"))
    access.audit(ctx(), principal, "collections.approve", job_id=b.publish_job_id, target=f"batch={b.id}", ip=client_ip(), detail={"note": body.get("note")})
    return views.get_batch(ctx(), b.id)


@bp.post("/collections/batches/<id:batchId>/decline")
@require(*DECIDERS)
@bp.arguments(schemas.DeclineRequest, example={"reason": "the images show identifiable people"})
@bp.response(200, schemas.CollectionBatch, description="The declined batch.")
@bp.fails(404)
def decline_batch(body: dict, batchId: str):
    """Decline a batch awaiting approval, with the reason its owner is told; nothing of it is published."""
    principal = current_principal()
    b = batches.decline(ctx(), batchId, principal.actor, body["reason"])
    access.audit(ctx(), principal, "collections.decline", target=f"batch={b.id}", ip=client_ip(), detail={"reason": body["reason"]})
    return views.get_batch(ctx(), b.id)
