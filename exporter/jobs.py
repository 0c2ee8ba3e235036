"""The job lifecycle. The jobs table is the source of truth; brokers only carry job ids.

pending -> running (claim: compare-and-set) -> succeeded | failed; pending/running ->
cancelled; succeeded -> expired (artifacts deleted by cleanup). A running job that stops
heart-beating, or a pending job nobody claims, is re-enqueued by the reaper a bounded
number of times, then failed with a reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from . import webhooks
from .context import Context
from .db import utcnow
from .errors import JobLost, NotFound
from .expiry import expires_at
from .kinds import get_kind, load_all
from .models import ACTIVE_STATUSES, Artifact, Job, TaskStatus

log = logging.getLogger(__name__)


# Run as hook(ctx, session, job_id, status) in the transaction that writes a job's final status
# (succeeded, failed, cancelled, reaped, expired); whatever it writes commits or rolls back with
# that status (a transactional outbox). It returns a callable to run after the commit, or None.
# The webhooks' hook is the engine's; a family appends its own where it registers its kinds.
FinalHook = Callable[[Context, Session, str, str], Callable[[], None] | None]
ON_FINAL: list[FinalHook] = [webhooks.on_final]


def on_final(ctx: Context, session: Session, job_id: str, status: str) -> list[Callable[[], None]]:
    """Run the ON_FINAL hooks inside `session`; an error rolls the final status back too."""
    load_all()  # every family's kinds module, and with it its hooks
    after = []
    for hook in ON_FINAL:
        action = hook(ctx, session, job_id, status)
        if action is not None:
            after.append(action)
    return after


def after_commit(job_id: str, actions: list[Callable[[], None]]) -> None:
    """Run what the ON_FINAL hooks left for after the commit; a failure is logged (the outbox rows stay)."""
    for action in actions:
        try:
            action()
        except Exception:
            log.exception("job %s: post-commit action failed", job_id)


def canonical_json(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dedupe_key(kind: str, params: dict[str, Any]) -> str:
    """Hash of kind + canonical params: equal requests, whatever their key order, match."""
    return hashlib.sha256(f"{kind}\n{canonical_json(params)}".encode()).hexdigest()


def dispatch(ctx: Context, job: Job) -> None:
    """Send the job's message, then record that the broker took it (`sent_at`).

    A job left pending with no `sent_at` was never sent (the broker refused it, or the
    process died between the commit and the send): the reaper sends it even where the
    broker cannot be asked what it holds (AMQP).
    """
    kind = get_kind(job.kind)
    ctx.enqueue(kind.task, job.id, kind.queue)
    log.info("job %s: enqueued %s on queue %s", job.id, kind.task, kind.queue)
    with ctx.db.session() as s:
        s.execute(update(Job).where(Job.id == job.id).values(sent_at=utcnow()))


def new_job(kind: str, params: dict[str, Any], requested_by: str | None = None, description: str | None = None) -> Job:
    """A pending job row (not yet added to a session), its params validated and completed by the kind."""
    params = get_kind(kind).normalize(dict(params or {}))
    return Job(
        kind=kind,
        params=json.loads(canonical_json(params)),
        dedupe_key=dedupe_key(kind, params),
        status="pending",
        requested_by=requested_by,
        description=description,
        queued_at=utcnow(),
    )


def submit(
    ctx: Context,
    kind: str,
    params: dict[str, Any],
    requested_by: str | None = None,
    description: str | None = None,
    enqueue: bool = True,
) -> Job:
    """Insert a pending job, commit, then enqueue it. Params are validated and completed by the kind.

    If the broker refuses the message the job stays pending and the reaper enqueues it
    later: nothing is lost.
    """
    with ctx.db.session() as s:
        job = add_pending(s, kind, params, requested_by, description)
    log.info("job %s: submitted (%s) by %s", job.id, kind, requested_by or "-")
    if enqueue:
        try:
            dispatch(ctx, job)
        except Exception:
            log.exception("job %s: enqueue failed; the reaper will enqueue it again", job.id)
    return job


def add_pending(session: Session, kind: str, params: dict[str, Any], requested_by: str | None = None, description: str | None = None) -> Job:
    """Insert a pending job in `session` (validated by its kind); the caller enqueues it after the commit."""
    job = new_job(kind, params, requested_by, description)
    session.add(job)
    session.flush()
    return job


def get(ctx: Context, job_id: str) -> Job:
    with ctx.db.session() as s:
        job = s.get(Job, job_id, options=[selectinload(Job.artifacts)])
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job


def list_jobs(ctx: Context, status: str | None = None, kind: str | None = None, limit: int = 50, offset: int = 0) -> list[Job]:
    query = select(Job).options(selectinload(Job.artifacts)).order_by(Job.created_at.desc(), Job.id)
    if status:
        query = query.where(Job.status == status)
    if kind:
        query = query.where(Job.kind == kind)
    with ctx.db.session() as s:
        return list(s.scalars(query.limit(limit).offset(offset)))


def claim(ctx: Context, job_id: str) -> str | None:
    """Move a pending job to running; returns the claim token, or None if someone else has it."""
    token = str(uuid.uuid4())
    now = utcnow()
    with ctx.db.session() as s:
        res = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "pending")
            .values(status="running", claim_token=token, attempts=Job.attempts + 1, started_at=now, heartbeat_at=now, error=None)
        )
    if res.rowcount != 1:
        return None
    log.info("job %s: claimed", job_id)
    return token


def _owned(job_id: str, token: str):
    return (Job.id == job_id, Job.status == "running", Job.claim_token == token)


def heartbeat(ctx: Context, job_id: str, token: str) -> None:
    """Say the job is alive; raises JobLost if it was cancelled or reaped meanwhile."""
    with ctx.db.session() as s:
        res = s.execute(update(Job).where(*_owned(job_id, token)).values(heartbeat_at=utcnow()))
    if res.rowcount != 1:
        raise JobLost(f"job {job_id} is no longer ours to run")


def progress(ctx: Context, job_id: str, token: str, done: int, total: int | None = None) -> None:
    values: dict[str, Any] = {"progress_done": done, "heartbeat_at": utcnow()}
    if total is not None:
        values["progress_total"] = total
    with ctx.db.session() as s:
        res = s.execute(update(Job).where(*_owned(job_id, token)).values(**values))
    if res.rowcount != 1:
        raise JobLost(f"job {job_id} is no longer ours to run")


@dataclass
class NewArtifact:
    name: str
    key: str
    filename: str
    size: int
    md5: str
    sha256: str
    content_type: str = "application/octet-stream"
    public: bool = False
    extra: dict = field(default_factory=dict)


def _expiry(ctx: Context, kind: str, now: datetime) -> datetime | None:
    return expires_at(ctx.settings, kind, get_kind(kind).expiry_seconds, now)


def succeed(ctx: Context, job_id: str, token: str, result: dict[str, Any] | None, artifacts: list[NewArtifact]) -> Job:
    """Finish the job and record its artifacts in one transaction; only the claim holder can."""
    now = utcnow()
    with ctx.db.session() as s:
        job = s.get(Job, job_id)
        if job is None or job.status != "running" or job.claim_token != token:
            raise JobLost(f"job {job_id} is no longer ours to finish")
        res = s.execute(
            update(Job)
            .where(*_owned(job_id, token))
            .values(status="succeeded", finished_at=now, heartbeat_at=now, result=result, expires_at=_expiry(ctx, job.kind, now), progress_done=Job.progress_total if job.progress_total else Job.progress_done)
        )
        if res.rowcount != 1:
            raise JobLost(f"job {job_id} is no longer ours to finish")
        for old in list(s.scalars(select(Artifact).where(Artifact.job_id == job_id))):
            s.delete(old)
        s.flush()
        for a in artifacts:
            s.add(Artifact(job_id=job_id, name=a.name, key=a.key, filename=a.filename, size=a.size, md5=a.md5, sha256=a.sha256, content_type=a.content_type, public=a.public))
        s.flush()
        after = on_final(ctx, s, job_id, "succeeded")
    log.info("job %s: succeeded with %d artifact(s)", job_id, len(artifacts))
    after_commit(job_id, after)
    return get(ctx, job_id)


def fail(ctx: Context, job_id: str, token: str | None, error: str, result: dict[str, Any] | None = None) -> bool:
    """Mark the job failed with a reason. With a token, only the claim holder can."""
    now = utcnow()
    cond = _owned(job_id, token) if token else (Job.id == job_id, Job.status.in_(ACTIVE_STATUSES))
    with ctx.db.session() as s:
        res = s.execute(update(Job).where(*cond).values(status="failed", finished_at=now, error=error[:4000], result=result))
        after = on_final(ctx, s, job_id, "failed") if res.rowcount == 1 else []
    if res.rowcount == 1:
        log.warning("job %s: failed: %s", job_id, error)
        after_commit(job_id, after)
    return res.rowcount == 1


def release(ctx: Context, job_id: str, token: str, reason: str) -> bool:
    """Give a running job back (pending) after a transient error, so it can be retried."""
    with ctx.db.session() as s:
        res = s.execute(update(Job).where(*_owned(job_id, token)).values(status="pending", claim_token=None, error=reason[:4000], queued_at=utcnow()))
    return res.rowcount == 1


def cancel(ctx: Context, job_id: str) -> Job:
    """Cancel a pending or running job; a running one stops at its next progress report."""
    with ctx.db.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        res = s.execute(update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE_STATUSES)).values(status="cancelled", finished_at=utcnow(), claim_token=None))
        after = on_final(ctx, s, job_id, "cancelled") if res.rowcount == 1 else []
    log.info("job %s: cancel requested", job_id)
    after_commit(job_id, after)
    return get(ctx, job_id)


def record_task_status(
    session: Session,
    entity_type: str,
    entity_id: str,
    task_type: str,
    state: str,
    error: str | None = None,
    value: dict[str, Any] | None = None,
    job_id: str | None = None,
    key: str = "status",
) -> TaskStatus:
    """Upsert the outcome of one piece of work on one entity; failures count up, success resets."""
    row = session.scalars(
        select(TaskStatus).where(
            TaskStatus.entity_type == entity_type, TaskStatus.entity_id == entity_id, TaskStatus.task_type == task_type, TaskStatus.key == key
        )
    ).first()
    if row is None:
        row = TaskStatus(entity_type=entity_type, entity_id=entity_id, task_type=task_type, key=key, failure_count=0)
        session.add(row)
    row.state = state
    row.error = error
    row.value = value
    row.job_id = job_id
    row.failure_count = (row.failure_count or 0) + 1 if error else 0
    row.last_updated = utcnow()
    session.flush()
    return row


def public_artifact(ctx: Context, key: str) -> Artifact | None:
    """The published public artifact stored at `key`, if any (never a private or expired one)."""
    with ctx.db.session() as s:
        return s.scalars(
            select(Artifact)
            .join(Job, Job.id == Artifact.job_id)
            .where(Artifact.key == key, Artifact.public.is_(True), Artifact.deleted_at.is_(None), Job.status == "succeeded")
        ).first()
