"""The reaper (celery beat's `exporter.reap`): recover work whose worker died or whose message was lost.

A running job or part whose heartbeat died is re-enqueued, and failed after MAX_ATTEMPTS
claims; a fanned-out parent is left to its parts (and finished here if its parts are done
but it is not). A job or part pending longer than PENDING_TIMEOUT_SECONDS is never failed
for waiting: the broker is asked (`ctx.queued_ids`) and a second message is sent only when
the first is gone; with a broker that cannot tell (AMQP), only work whose message was never
sent (`sent_at` unset: the broker refused it, or the sender died first) is sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from . import jobs, parts
from .context import Context, QueuedIds
from .db import utcnow
from .kinds import get_kind
from .models import Job
from .parts import JobPart, has_parts

log = logging.getLogger(__name__)


def reap(ctx: Context, now: datetime | None = None) -> dict[str, Any]:
    """Both passes, jobs then parts; what the beat task returns."""
    report = reap_jobs(ctx, now)
    done = reap_parts(ctx, now)
    return {"requeued": report.requeued, "failed": report.failed, "waiting": report.waiting, "parts_requeued": done.requeued, "parents_finished": done.finished}


PROBE_RECHECK_SECONDS = 1.0  # a message a worker is taking is briefly in no list and not yet unacked


def held_by_broker(probe: QueuedIds | None, queues: Sequence[str], ids: set[str], recheck: float = PROBE_RECHECK_SECONDS) -> set[str] | None:
    """Which of `ids` the broker holds (queued or reserved); None when it cannot tell.

    An id missing from the first look is looked for again after `recheck` seconds: Redis
    hands a message to a worker by popping it from the queue list and only then recording
    it as unacked, so one look can miss a message in transit.
    """
    if probe is None:
        return None
    found = probe(queues)
    if found is None:
        return None
    if ids - found:
        time.sleep(recheck)
        again = probe(queues)
        if again is None:
            return None
        found |= again
    return found


def still_queued(in_broker: set[str] | None, work_id: str, sent_at: datetime | None) -> bool:
    """Whether pending work's message is still with the broker.

    Where the broker can be asked (`in_broker` not None), its answer. Where it cannot (AMQP,
    which keeps every message it confirmed, and hands back those of a dead consumer), the
    message is there if it was ever sent (`sent_at`); work never sent is lost, and sent now.
    """
    if in_broker is not None:
        return work_id in in_broker
    return sent_at is not None


@dataclass
class ReapReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # pending past the timeout, their message still queued


def reap_jobs(ctx: Context, now: datetime | None = None) -> ReapReport:
    """Re-enqueue jobs whose worker died (failing them after MAX_ATTEMPTS) or whose message was lost.

    A pending job is never failed for waiting. It gets a second message only when the
    broker says its first is no longer there (ctx.queued_ids); with a broker that cannot
    tell, only when its message was never sent (`still_queued`).
    """
    now = now or utcnow()
    cfg = ctx.settings
    stale = now - timedelta(seconds=cfg.stale_after_seconds)
    lost = now - timedelta(seconds=cfg.pending_timeout_seconds)
    report = ReapReport()
    to_enqueue: list[Job] = []
    after_reap: list[Callable[[], None]] = []
    with ctx.db.session() as s:
        candidates = s.scalars(
            select(Job).where(
                ((Job.status == "running") & (Job.heartbeat_at < stale) & ~has_parts()) | ((Job.status == "pending") & (Job.queued_at < lost))
            )
        ).all()
    waiting = [job for job in candidates if job.status == "pending"]
    in_broker = held_by_broker(ctx.queued_ids, sorted({get_kind(job.kind).queue for job in waiting}), {job.id for job in waiting}) if waiting else None
    for job in candidates:
        was = job.status
        if was == "pending" and still_queued(in_broker, job.id, job.sent_at):
            report.waiting.append(job.id)
            log.info("job %s: pending since %s, %s", job.id, job.queued_at, "its message is still queued" if in_broker is not None else "the broker took its message (it cannot say more)")
            continue
        try:
            outcome = _settle(ctx, job, now, after_reap)  # a transaction per job: one that fails stops no other
        except Exception:
            log.exception("job %s: the reaper could not settle it; it tries again at its next run", job.id)
            continue
        if outcome == "failed":
            report.failed.append(job.id)
        elif outcome == "requeued":
            report.requeued.append(job.id)
            to_enqueue.append(job)
    jobs.after_commit("reaped", after_reap)
    for job in to_enqueue:
        try:
            jobs.dispatch(ctx, job)
        except Exception:
            log.exception("job %s: re-enqueue failed; will try at the next reaper run", job.id)
    return report


def _settle(ctx: Context, job: Job, now: datetime, after_reap: list[Callable[[], None]]) -> str | None:
    """Fail or re-queue one stale or lost job (compare-and-set on what was read); the outcome, or None if it moved meanwhile."""
    cfg = ctx.settings
    was = job.status
    cond = [Job.id == job.id, Job.status == was]
    cond.append(Job.heartbeat_at == job.heartbeat_at if was == "running" else Job.queued_at == job.queued_at)
    with ctx.db.session() as s:
        if was == "running" and job.attempts >= cfg.max_attempts:  # its own runs died; lost messages never count
            reason = f"gave up after {job.attempts} attempt(s): the worker stopped heart-beating"
            if s.execute(update(Job).where(*cond).values(status="failed", finished_at=now, claim_token=None, error=reason)).rowcount != 1:
                return None
            after = jobs.on_final(ctx, s, job.id, "failed")
            log.warning("job %s: reaper failed it: %s", job.id, reason)
            outcome = "failed"
        else:
            if s.execute(update(Job).where(*cond).values(status="pending", claim_token=None, queued_at=now, sent_at=None, recoveries=Job.recoveries + 1)).rowcount != 1:
                return None
            after = []
            log.warning("job %s: reaper re-enqueues it (was %s)%s", job.id, was, "" if was == "running" else ": its message is not in the broker")
            outcome = "requeued"
    after_reap += after
    return outcome


@dataclass
class PartsReapReport:
    requeued: list[int]
    finished: list[str]


def reap_parts(ctx: Context, now: datetime | None = None, queued_ids: Callable[[Sequence[str]], set[str] | None] | None = None) -> PartsReapReport:
    """Re-enqueue parts whose worker died or whose message is gone; finish parents whose parts are all done."""
    now = now or utcnow()
    cfg = ctx.settings
    stale = now - timedelta(seconds=cfg.stale_after_seconds)
    lost = now - timedelta(seconds=cfg.pending_timeout_seconds)
    report = PartsReapReport([], [])
    with ctx.db.session() as s:
        rows = s.execute(
            select(JobPart.id, JobPart.status, JobPart.heartbeat_at, JobPart.queued_at, JobPart.sent_at, JobPart.attempts, JobPart.items, Job.kind)
            .join(Job, Job.id == JobPart.job_id)
            .where(Job.status == "running", ((JobPart.status == "running") & (JobPart.heartbeat_at < stale)) | ((JobPart.status == "pending") & (JobPart.queued_at < lost)))
        ).all()
    waiting = [r for r in rows if r.status == "pending"]
    in_broker = held_by_broker(queued_ids or ctx.queued_ids, sorted({get_kind(r.kind).queue for r in waiting}), {str(r.id) for r in waiting}) if waiting else None
    for r in rows:
        if r.status == "pending" and still_queued(in_broker, str(r.id), r.sent_at):
            continue  # still queued (a backlog): never a second message
        cond = [JobPart.id == r.id, JobPart.status == r.status]
        cond.append(JobPart.heartbeat_at == r.heartbeat_at if r.status == "running" else JobPart.queued_at == r.queued_at)
        if r.status == "running" and r.attempts >= cfg.max_attempts:
            with ctx.db.session() as s:
                res = s.execute(update(JobPart).where(*cond).values(status="running", claim_token=parts.GAVE_UP))
            if res.rowcount == 1:
                log.warning("part %s: gave up after %d attempt(s): the worker stopped heart-beating", r.id, r.attempts)
                parts.complete(ctx, r.id, parts.GAVE_UP, len(r.items), error=f"gave up after {r.attempts} attempt(s): the worker stopped heart-beating")
            continue
        with ctx.db.session() as s:
            res = s.execute(update(JobPart).where(*cond).values(status="pending", claim_token=None, queued_at=now, sent_at=None, recoveries=JobPart.recoveries + 1))
        if res.rowcount == 1:
            log.warning("part %s: reaper re-enqueues it (was %s)", r.id, r.status)
            report.requeued.append(r.id)
            parts.enqueue(ctx, r.id, get_kind(r.kind).queue)
    with ctx.db.session() as s:
        done_parents = list(
            s.scalars(
                select(Job.id).where(Job.status == "running", has_parts(), ~select(JobPart.id).where(JobPart.job_id == Job.id, JobPart.status != "done").exists())
            )
        )
    for job_id in done_parents:
        try:
            if parts.finish_if_complete(ctx, job_id):
                report.finished.append(job_id)
        except Exception:  # its final transaction failed and rolled back alone; the others go on
            log.exception("job %s: the reaper could not finish it; it tries again at its next run", job_id)
    return report
