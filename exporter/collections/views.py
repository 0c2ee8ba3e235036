"""What the API, the CLI and the pages show of batches: views, overlap with other projects, the approver's thumbnails."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .. import jobs
from ..context import Context
from ..errors import InvalidRequest, NotFound
from ..models import Job
from .models import PUBLIC_STATES, CollectionBatch, CollectionDecision, CollectionEmail, CollectionFile, CollectionProject

log = logging.getLogger(__name__)

def get_project(session: Session, name_or_id: str | int) -> CollectionProject:
    key = str(name_or_id).strip()
    row = session.scalars(select(CollectionProject).where(CollectionProject.name == key)).first()
    if row is None and key.isdigit():
        row = session.get(CollectionProject, int(key))
    if row is None:
        raise NotFound(f"no collection project {key!r}")
    return row


def batch_row(session: Session, batch_id: Any) -> CollectionBatch:
    try:
        key = int(str(batch_id).strip())
    except ValueError:
        raise InvalidRequest(f"{batch_id!r} is not a batch id (a number)", field="batch") from None
    b = session.get(CollectionBatch, key)
    if b is None:
        raise NotFound(f"no collection batch {key}")
    return b


def dispatch(ctx: Context, job: Job) -> None:
    try:
        jobs.dispatch(ctx, job)
    except Exception:
        log.exception("job %s: enqueue failed; the reaper will enqueue it again", job.id)


# --- views ---------------------------------------------------------------------------------------


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def overlap(session: Session, b: CollectionBatch) -> list[dict[str, Any]]:
    """Objects of this batch that other projects already sent (published), matched by object id or sha256."""
    mine = session.execute(select(CollectionFile.id, CollectionFile.source_name, CollectionFile.sha256, CollectionFile.object_id).where(CollectionFile.batch_id == b.id)).all()
    shas = {r.sha256 for r in mine if r.sha256}
    objects = {r.object_id for r in mine if r.object_id}
    if not shas and not objects:
        return []
    conds = []
    if shas:
        conds.append(CollectionFile.sha256.in_(shas))
    if objects:
        conds.append(CollectionFile.object_id.in_(objects))
    theirs = session.execute(
        select(CollectionFile.sha256, CollectionFile.object_id, CollectionBatch.id, CollectionProject.name)
        .join(CollectionBatch, CollectionBatch.id == CollectionFile.batch_id)
        .join(CollectionProject, CollectionProject.id == CollectionBatch.project_id)
        .where(or_(*conds), CollectionBatch.project_id != b.project_id, CollectionBatch.state.in_(PUBLIC_STATES))
    ).all()
    out = []
    for r in mine:
        for t in theirs:
            by = "sha256" if r.sha256 and r.sha256 == t.sha256 else ("object_id" if r.object_id and r.object_id == t.object_id else None)
            if by:
                out.append({"file": r.source_name, "project": t.name, "batch": t.id, "matchedBy": by, "objectId": r.object_id})
    return out


def file_view(f: CollectionFile) -> dict[str, Any]:
    return {
        "id": f.id, "sourceName": f.source_name, "size": f.size, "sha256": f.sha256, "externalId": f.external_id, "objectId": f.object_id,
        "converted": f.converted_key is not None, "contentType": f.content_type, "width": f.width, "height": f.height, "convertedSize": f.converted_size,
        "refusedReason": f.refused_reason, "metadata": f.file_metadata or {},
    }


def batch_view(ctx: Context, session: Session, b: CollectionBatch, files: bool = True) -> dict[str, Any]:
    p = session.get(CollectionProject, b.project_id)
    view: dict[str, Any] = {
        "id": b.id, "project": p.name, "state": b.state, "jobId": b.job_id, "publishJobId": b.publish_job_id, "importJobId": b.import_job_id,
        "counts": {"files": b.files_total, "retrieved": b.retrieved, "converted": b.converted, "refused": b.refused, "waiting": b.waiting, "cap": b.cap},
        "approvalExpiresAt": _iso(b.approval_expires_at), "manifestURL": b.manifest_url,
        "import": {"state": b.import_state, "id": b.import_id, "manifestCount": b.manifest_count, "importedCount": b.imported_count, "failedCount": b.failed_count},
        "error": b.error, "createdAt": _iso(b.created_at),
        "quarantine": {"originalsDeletedAt": _iso(b.originals_deleted_at), "convertedDeletedAt": _iso(b.converted_deleted_at)},
    }
    if files:
        rows = list(session.scalars(select(CollectionFile).where(CollectionFile.batch_id == b.id).order_by(CollectionFile.id)))
        view["files"] = [file_view(f) for f in rows]
        view["refusedFiles"] = [{"sourceName": f.source_name, "reason": f.refused_reason} for f in rows if f.refused_reason]
        view["overlap"] = overlap(session, b)
        view["decisions"] = [{"action": d.action, "by": d.by, "at": _iso(d.at), "note": d.note} for d in session.scalars(select(CollectionDecision).where(CollectionDecision.batch_id == b.id).order_by(CollectionDecision.id))]
        view["emails"] = [{"event": e.event, "state": e.state, "attempts": e.attempts} for e in session.scalars(select(CollectionEmail).where(CollectionEmail.batch_id == b.id).order_by(CollectionEmail.id))]
    return view


def get_batch(ctx: Context, batch_id: Any, files: bool = True) -> dict[str, Any]:
    with ctx.db.session() as s:
        return batch_view(ctx, s, batch_row(s, batch_id), files=files)


def list_batches(ctx: Context, project: str | None = None, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    with ctx.db.session() as s:
        q = select(CollectionBatch).order_by(CollectionBatch.id.desc()).limit(limit)
        if project:
            q = q.where(CollectionBatch.project_id == get_project(s, project).id)
        if state:
            q = q.where(CollectionBatch.state == state)
        return [batch_view(ctx, s, b, files=False) for b in s.scalars(q)]


def quarantined_image(ctx: Context, file_id: int) -> tuple[str, str] | None:
    """(storage key, content type) of a batch file's converted image, for an approver's thumbnail; None if there is none."""
    with ctx.db.session() as s:
        f = s.get(CollectionFile, file_id)
        if f is None or f.converted_key is None or s.get(CollectionBatch, f.batch_id).converted_deleted_at is not None:
            return None
        return f.converted_key, f.content_type or "application/octet-stream"
