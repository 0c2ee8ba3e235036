"""Polling sources into batches, the `collect_batch` job (quarantine + conversion), and the approval of a batch.

Poll (`poll_project`, `poll_all`; beat task `exporter.collections_poll`): one poll of a project
at a time (a lease on the project row, compare-and-set). Files new since the last poll (a name +
size + mtime/ETag never seen) are recorded; those no batch holds yet form a new batch, at most
COLLECTIONS_CAP_UNAPPROVED of them until the project's data rights are approved
(COLLECTIONS_CAP after): the rest wait for the next poll, and the owner is told why. The batch,
its files and its `collect_batch` job are written in one transaction; the job is sent after it.

The job copies each file into private quarantine storage (`quarantine/collections/...`, with its
sha256) and converts it (`convert.convert`); a refused file keeps the reason. Each file's step is
committed as it is reached, so a run killed anywhere resumes from the next file; keys carry the
run id, and objects no row names are removed by cleanup (exporter.orphans). The job's success
and the batch's `awaiting_approval` are one transaction (the ON_FINAL hook `on_final`), with the
owner's notifications.

Approval: `approve` and `decline` (with a reason) by an approver, each a compare-and-set on the
batch's state, audited in `collection_decisions`, and committed with the owner's notification
(and, on approval, the `publish_collection` job). A request not decided by
`approval_expires_at` expires (`expire_requests`, run by the poll).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from .. import jobs
from ..context import Context
from ..db import utcnow
from ..errors import ExporterError, InvalidRequest, NotFound, TransientError
from ..models import Job
from ..runner import JobRun
from .models import (
    ACTIVE,
    APPROVED,
    AWAITING_APPROVAL,
    COLLECT,
    CONVERTING,
    DECLINED,
    EXPIRED,
    FAILED,
    PUBLISH,
    RETRIEVING,
    CollectionBatch,
    CollectionDecision,
    CollectionFile,
    CollectionProject,
    CollectionSourceFile,
    batch_params,
)
from .notify import after_all, notify
from .projects import cap_of, get_project, require_grant
from .sources import SourceChanged, open_source
from .views import batch_row, dispatch

log = logging.getLogger(__name__)

KIND = COLLECT
QUARANTINE = "quarantine/collections/"
POLL_LEASE_SECONDS = 600
OBJECT_KEYS = ("object_id", "objectId", "OBJECT", "object")  # per-file metadata that names the object


# --- polling ---------------------------------------------------------------------------------


@dataclass
class PollResult:
    project: str
    found: int = 0  # files new since the last poll
    batch_id: int | None = None
    job_id: str | None = None
    taken: int = 0
    waiting: int = 0  # files left for a later batch by the cap
    skipped: str | None = None  # why nothing was read
    after: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"project": self.project, "found": self.found, "batch": self.batch_id, "job": self.job_id, "taken": self.taken, "waiting": self.waiting, "skipped": self.skipped}


def _lease(ctx: Context, project_id: int) -> bool:
    now = utcnow()
    with ctx.db.session() as s:
        return s.execute(
            update(CollectionProject)
            .where(CollectionProject.id == project_id, CollectionProject.status == ACTIVE, or_(CollectionProject.poll_lease_until.is_(None), CollectionProject.poll_lease_until < now))
            .values(poll_lease_until=now + timedelta(seconds=POLL_LEASE_SECONDS))
            .execution_options(synchronize_session=False)
        ).rowcount == 1


def _release(ctx: Context, project_id: int, found: int | None, error: str | None) -> None:
    values: dict[str, Any] = {"poll_lease_until": None, "last_polled_at": utcnow(), "last_poll_error": error}
    if found is not None:
        values["last_poll_found"] = found
    with ctx.db.session() as s:
        s.execute(update(CollectionProject).where(CollectionProject.id == project_id).values(**values).execution_options(synchronize_session=False))


def poll_project(ctx: Context, name: str, enqueue: bool = True) -> PollResult:
    """Look for new files in the project's source; a batch job for those no batch holds yet (up to the cap)."""
    with ctx.db.session() as s:
        p = get_project(s, name)
    result = PollResult(project=p.name)
    if p.status != ACTIVE:
        result.skipped = f"project {p.name} is {p.status}"
        return result
    if not _lease(ctx, p.id):
        result.skipped = f"project {p.name} is being polled by another process"
        return result
    try:
        require_grant(p)
        source = open_source(ctx.settings, p.source)
        settled = time.time() - ctx.settings.collections_settle_seconds
        entries = [e for e in source.entries() if e.modified is None or e.modified <= settled]  # one still being written waits
        with ctx.db.session() as s:
            known = set(s.execute(select(CollectionSourceFile.name, CollectionSourceFile.signature).where(CollectionSourceFile.project_id == p.id)).all())
            new = [e for e in entries if (e.name, e.signature) not in known]
            s.add_all(CollectionSourceFile(project_id=p.id, name=e.name, size=e.size, signature=e.signature, seen_at=utcnow()) for e in new)
        result.found = len(new)
        _take(ctx, p, source, result, enqueue)
    except ExporterError as exc:
        result.skipped = str(exc)
        _release(ctx, p.id, None, str(exc)[:4000])
        log.info("collections: poll of %s: %s", p.name, exc)  # the caller tells it: poll_all as a warning, the CLI in its one line
        return result
    except Exception as exc:
        _release(ctx, p.id, None, f"{type(exc).__name__}: {exc}"[:4000])
        raise
    _release(ctx, p.id, result.found, None)
    for action in result.after:
        action()
    log.info("collections: poll of %s found %d new file(s); batch %s takes %d, %d wait", p.name, result.found, result.batch_id, result.taken, result.waiting)
    return result


def _take(ctx: Context, p: CollectionProject, source, result: PollResult, enqueue: bool) -> None:
    cap = cap_of(ctx, p)
    with ctx.db.session() as s:
        unbatched = (CollectionSourceFile.project_id == p.id, CollectionSourceFile.batch_id.is_(None))
        taken = list(s.scalars(select(CollectionSourceFile).where(*unbatched).order_by(CollectionSourceFile.id).limit(cap)))  # not the 20,000 that wait
        if not taken:
            return
        meta = source.butler_index()
        left = s.scalar(select(func.count()).select_from(CollectionSourceFile).where(*unbatched)) - len(taken)
        batch = CollectionBatch(project_id=p.id, state=RETRIEVING, files_total=len(taken), cap=cap, waiting=left, retrieved=0, converted=0, refused=0)
        s.add(batch)
        s.flush()
        ids = [f.id for f in taken]
        got = s.execute(update(CollectionSourceFile).where(CollectionSourceFile.id.in_(ids), CollectionSourceFile.batch_id.is_(None)).values(batch_id=batch.id).execution_options(synchronize_session=False)).rowcount
        if got != len(ids):
            raise ExporterError(f"project {p.name}: files were taken by another batch meanwhile; the next poll goes on")
        s.add_all(CollectionFile(batch_id=batch.id, source_file_id=f.id, source_name=f.name, size=f.size, file_metadata=meta.get(f.name) or {}) for f in taken)
        job = jobs.add_pending(s, KIND, {"batch": batch.id}, requested_by="collections-poll", description=f"collection {p.name}: batch {batch.id} ({len(taken)} files)")
        batch.job_id = job.id
        result.batch_id, result.job_id, result.taken, result.waiting = batch.id, job.id, len(taken), left
    if enqueue:
        result.after.append(lambda: dispatch(ctx, job))




def poll_all(ctx: Context, warn: bool = True) -> list[dict[str, Any]]:
    """Poll every active project (celery beat); a project that fails is logged (`warn`: one not polled too) and the others go on."""
    with ctx.db.session() as s:
        names = list(s.scalars(select(CollectionProject.name).where(CollectionProject.status == ACTIVE).order_by(CollectionProject.id)))
    out = []
    for name in names:
        try:
            result = poll_project(ctx, name)
        except Exception:
            log.exception("collections: poll of %s failed", name)
            continue
        if result.skipped and warn:
            log.warning("collections: poll of %s: %s", name, result.skipped)
        out.append(result.to_dict())
    return out


def scheduled(ctx: Context) -> dict[str, Any]:
    """The beat task: expire undecided requests, poll every active source, re-send lost e-mails."""
    from .notify import sweep

    expired = expire_requests(ctx)
    return {"expired": expired, "polls": poll_all(ctx), "emails_resent": len(sweep(ctx))}


# --- the collect_batch job ----------------------------------------------------------------------


def normalize(params: dict[str, Any]) -> dict[str, Any]:
    return batch_params(params)


def _set(ctx: Context, model, row_id: int, **values: Any) -> None:
    with ctx.db.session() as s:
        s.execute(update(model).where(model.id == row_id).values(**values).execution_options(synchronize_session=False))


def _object_id(meta: dict[str, str]) -> str | None:
    return next((str(meta[k])[:255] for k in OBJECT_KEYS if meta.get(k)), None)


def run(job: JobRun) -> dict[str, Any]:
    ctx = job.ctx
    with ctx.db.session() as s:
        batch = s.get(CollectionBatch, job.params["batch"])
        if batch is None:
            raise NotFound(f"no collection batch {job.params['batch']}")
        p = s.get(CollectionProject, batch.project_id)
        files = list(s.scalars(select(CollectionFile).where(CollectionFile.batch_id == batch.id).order_by(CollectionFile.id)))
        seen = dict(s.execute(select(CollectionSourceFile.id, CollectionSourceFile.signature).where(CollectionSourceFile.batch_id == batch.id)).all())
    prefix = f"{QUARANTINE}{p.id}/{batch.id}/{job.run_id}"
    total = 2 * len(files)
    done = sum(f.quarantine_key is not None or f.refused_reason is not None for f in files)
    job.progress(done, total, force=True)
    source = None
    for f in files:
        if f.quarantine_key is not None or f.refused_reason is not None:
            continue
        with ctx.db.session() as s:  # the owner may have revoked the grant since the last file
            require_grant(s.get(CollectionProject, p.id))
        source = source or open_source(ctx.settings, p.source)
        _retrieve(ctx, job, source, f, f"{prefix}/{f.id}", seen.get(f.source_file_id))
        done += 1
        job.progress(done, total)
    _set(ctx, CollectionBatch, batch.id, state=CONVERTING)
    for f in files:
        if f.converted_key is None and f.refused_reason is None:
            _convert(ctx, f, f"{prefix}/c/{f.id}")
        done += 1
        job.progress(done, total)
    counts = _counts(ctx, batch.id)
    job.log.info("job %s: batch %s of %s: %d retrieved, %d converted, %d refused", job.job_id, batch.id, p.name, counts["retrieved"], counts["converted"], counts["refused"])
    return {"batch": batch.id, "project": p.name, **counts}


def _retrieve(ctx: Context, job: JobRun, source, f: CollectionFile, key: str, expect: str | None) -> None:
    """Copy the file into quarantine; it must be the version the poll saw (else it is refused here and the next poll takes the new one)."""
    try:
        with source.open(f.source_name, expect) as fh:
            info = ctx.storage.write(key, fh, "application/octet-stream")
            if expect is not None:
                source.check(fh, f.source_name, expect)
    except NotFound as exc:
        f.refused_reason = f"gone from the source before it was retrieved ({exc})"
        _set(ctx, CollectionFile, f.id, refused_reason=f.refused_reason)
        return
    except SourceChanged as exc:
        f.refused_reason = str(exc)
        _set(ctx, CollectionFile, f.id, refused_reason=f.refused_reason)
        return
    except OSError as exc:  # a folder on a network file system that hiccups: the next run goes on from this file
        raise TransientError(f"could not read {f.source_name} from the source: {exc}") from None
    f.quarantine_key, f.sha256, f.size = key, info.sha256, info.size
    _set(ctx, CollectionFile, f.id, quarantine_key=key, sha256=info.sha256, size=info.size, external_id=info.sha256[:20])


def _convert(ctx: Context, f: CollectionFile, key: str) -> None:
    from . import convert as converter  # astropy and numpy: loaded by workers (workers/tasks.py), not by the CLI or the web app

    suffix = Path(f.source_name).suffix[:16]
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        with ctx.storage.open(f.quarantine_key) as fh:
            while chunk := fh.read(1024 * 1024):
                tmp.write(chunk)
        tmp.flush()
        try:
            out = converter.convert(Path(tmp.name), max_bytes=ctx.settings.collections_max_image_bytes)
        except converter.Refused as exc:
            f.refused_reason = exc.reason
            _set(ctx, CollectionFile, f.id, refused_reason=exc.reason[:4000])
            return
    key = f"{key}.{out.extension}"
    info = ctx.storage.write(key, out.data, out.content_type)
    meta = {**(f.file_metadata or {}), **{str(k): str(v) for k, v in (out.metadata or {}).items()}}
    f.converted_key = key
    _set(ctx, CollectionFile, f.id, converted_key=key, converted_size=info.size, content_type=out.content_type, extension=out.extension, width=out.width, height=out.height,
         file_metadata=meta, object_id=_object_id(meta))


def _counts(ctx: Context, batch_id: int) -> dict[str, int]:
    with ctx.db.session() as s:
        rows = s.execute(select(CollectionFile.quarantine_key, CollectionFile.converted_key, CollectionFile.refused_reason).where(CollectionFile.batch_id == batch_id)).all()
    return {
        "retrieved": sum(r.quarantine_key is not None for r in rows),
        "converted": sum(r.converted_key is not None for r in rows),
        "refused": sum(r.refused_reason is not None for r in rows),
    }


def quarantine_keys(session: Session, keys: list[str]) -> set[str]:
    """exporter.orphans: the quarantine keys a batch file still names (not those retention marked deleted)."""
    files = select(CollectionFile).join(CollectionBatch, CollectionBatch.id == CollectionFile.batch_id)
    a = set(session.scalars(files.with_only_columns(CollectionFile.quarantine_key).where(CollectionFile.quarantine_key.in_(keys), CollectionBatch.originals_deleted_at.is_(None))))
    b = set(session.scalars(files.with_only_columns(CollectionFile.converted_key).where(CollectionFile.converted_key.in_(keys), CollectionBatch.converted_deleted_at.is_(None))))
    return a | b




def on_collect_final(ctx: Context, session: Session, job_id: str, status: str) -> Callable[[], None] | None:
    b = session.scalars(select(CollectionBatch).where(CollectionBatch.job_id == job_id)).first()
    if b is None or b.state not in (RETRIEVING, CONVERTING):
        return None
    rows = session.execute(select(CollectionFile.source_name, CollectionFile.quarantine_key, CollectionFile.converted_key, CollectionFile.refused_reason).where(CollectionFile.batch_id == b.id)).all()
    b.retrieved = sum(r.quarantine_key is not None for r in rows)
    b.converted = sum(r.converted_key is not None for r in rows)
    b.refused = sum(r.refused_reason is not None for r in rows)
    actions = []
    if status != "succeeded":
        b.state, b.error = FAILED, session.scalar(select(Job.error).where(Job.id == job_id)) or status
        actions.append(notify(ctx, session, b, "failed", job_id=job_id, error=b.error))
    else:
        b.state = AWAITING_APPROVAL
        b.approval_expires_at = utcnow() + timedelta(seconds=ctx.settings.collections_approval_seconds)
        refusals = [(r.source_name, r.refused_reason) for r in rows if r.refused_reason]
        actions.append(notify(ctx, session, b, "retrieved", refusals=refusals))
        p = session.get(CollectionProject, b.project_id)
        if b.waiting and not p.data_rights_approved:
            actions.append(notify(ctx, session, b, "capped", cap_after=ctx.settings.collections_cap))
        actions.append(notify(ctx, session, b, "awaiting"))
    session.flush()
    return after_all(actions)


# --- approval ------------------------------------------------------------------------------------




def _check_by(by: Any) -> str:
    if not isinstance(by, str) or not by.strip():
        raise InvalidRequest("say who decides (--by NAME)", field="by")
    return by.strip()[:250]


def _expire(ctx: Context, session: Session, b: CollectionBatch) -> Callable[[], None] | None:
    got = session.execute(update(CollectionBatch).where(CollectionBatch.id == b.id, CollectionBatch.state == AWAITING_APPROVAL).values(state=EXPIRED).execution_options(synchronize_session=False)).rowcount
    if got != 1:
        return None
    b.state = EXPIRED
    session.add(CollectionDecision(project_id=b.project_id, batch_id=b.id, action="expire", by="exporter", note=f"no decision by {b.approval_expires_at.isoformat()}"))
    return notify(ctx, session, b, "expired")


def _decide(ctx: Context, batch_id: Any, by: str, action: str, note: str | None) -> CollectionBatch:
    after: list[Callable[[], None] | None] = []
    publish_job = None
    expired = False
    with ctx.db.session() as s:
        b = batch_row(s, batch_id)
        if b.state == AWAITING_APPROVAL and b.approval_expires_at is not None and b.approval_expires_at < utcnow():
            after.append(_expire(ctx, s, b))
            expired = True
        elif b.state != AWAITING_APPROVAL:
            raise InvalidRequest(f"batch {b.id} is {b.state}; only a batch awaiting approval can be {action}d", field="batch")
        else:
            if action == "approve" and b.converted == 0:
                raise InvalidRequest(f"batch {b.id} has no converted image to publish; decline it", field="batch")
            new_state = APPROVED if action == "approve" else DECLINED
            got = s.execute(update(CollectionBatch).where(CollectionBatch.id == b.id, CollectionBatch.state == AWAITING_APPROVAL).values(state=new_state).execution_options(synchronize_session=False)).rowcount
            if got != 1:
                raise InvalidRequest(f"batch {b.id} was decided by someone else meanwhile", field="batch")
            b.state = new_state
            s.add(CollectionDecision(project_id=b.project_id, batch_id=b.id, action=action, by=by, note=note))
            if action == "approve":
                publish_job = jobs.add_pending(s, PUBLISH, {"batch": b.id}, requested_by=by, description=f"publication of collection batch {b.id}")
                b.publish_job_id = publish_job.id
            after.append(notify(ctx, s, b, "approved" if action == "approve" else "declined", by=by, note=note))
        s.flush()
    if publish_job is not None:
        dispatch(ctx, publish_job)
    for a in after:
        if a is not None:
            a()
    if expired:
        raise InvalidRequest(f"batch {b.id}'s approval request expired at {b.approval_expires_at.isoformat()}; it can no longer be {action}d", field="batch")
    log.info("collections: batch %s %sd by %s", b.id, action, by)
    return b


def approve(ctx: Context, batch_id: Any, by: str, note: str | None = None) -> CollectionBatch:
    """Approve a batch awaiting approval: it is published (a publish_collection job) and its owner told."""
    return _decide(ctx, batch_id, _check_by(by), "approve", (note or "").strip() or None)


def decline(ctx: Context, batch_id: Any, by: str, reason: str) -> CollectionBatch:
    """Decline a batch awaiting approval, with the reason its owner is told; nothing of it is published."""
    by = _check_by(by)
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRequest("a decline needs a reason (--reason TEXT); the owner is told it", field="reason")
    return _decide(ctx, batch_id, by, "decline", reason.strip())


def expire_requests(ctx: Context) -> int:
    """Expire every approval request past its time (with an audit row and the owner told)."""
    with ctx.db.session() as s:
        due = list(s.scalars(select(CollectionBatch).where(CollectionBatch.state == AWAITING_APPROVAL, CollectionBatch.approval_expires_at < utcnow())))
        after = [_expire(ctx, s, b) for b in due]
    for a in after:
        if a is not None:
            a()
    return sum(a is not None for a in after) if due else 0
