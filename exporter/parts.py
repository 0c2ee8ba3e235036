"""Fan-out parts: a job's run splits its work into parts and returns without waiting.

The parent job stays `running` (its claim token kept) but no worker holds it. Each part is
its own task (`exporter.run_part`, the part id as argument, on the kind's queue): it claims
the part with a compare-and-set, does the work, and in one transaction marks the part done
and counts it on the parent (the parent's row is the lock). The part that finds no other
part unfinished finishes the parent through `jobs.succeed` with the parent's token, so the
parent succeeds once. A parent that is no longer running makes the remaining parts no-ops.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint, func, select, update
from sqlalchemy.orm import Mapped, mapped_column

from . import jobs
from .context import Context
from .db import Base, UTCDateTime, utcnow
from .errors import JobLost
from .kinds import get_kind
from .models import Job

log = logging.getLogger(__name__)

PART_TASK = "exporter.run_part"
GAVE_UP = "gave-up"


class FannedOut:
    """What a kind's run returns when parts will finish the job: do not succeed it yet."""

    def __repr__(self) -> str:
        return "FANNED_OUT"


FANNED_OUT = FannedOut()


class JobFanout(Base):
    """A job that fanned out: the state its finish step needs, and how many parts it has."""

    __tablename__ = "job_fanouts"

    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    parts: Mapped[int] = mapped_column(Integer)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobPart(Base):
    """One chunk of a fanned-out job's work (e.g. a list of resource ids)."""

    __tablename__ = "job_parts"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    items: Mapped[list[Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True, default="pending")  # pending, running, done
    claim_token: Mapped[str | None] = mapped_column(String(36), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    recoveries: Mapped[int] = mapped_column(Integer, default=0)
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # as Job.sent_at
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


Work = Callable[[Context, Job, list[Any], int], None]  # (ctx, parent job, the part's items, the part's seq)
Finish = Callable[[Context, Job, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class PartHandler:
    work: Work  # does one part's items; must be harmless to repeat
    finish: Finish  # the parent's result, once every part is done


_handlers: dict[str, PartHandler] = {}


def register_handler(kind: str, work: Work, finish: Finish) -> None:
    _handlers[kind] = PartHandler(work, finish)


def _handler(kind: str) -> PartHandler:
    get_kind(kind)  # loads the families, which register their handlers
    return _handlers[kind]


def fan_out(ctx: Context, job_id: str, items: Sequence[Any], chunk: int, state: dict[str, Any], done: int = 0, total: int | None = None) -> FannedOut | dict[str, Any]:
    """Split `items` into parts of `chunk`, commit them, enqueue them; returns FANNED_OUT.

    With no items the job is finished here: the kind's finish result is returned for the
    runner to succeed with. `done`/`total` place the parts in the job's progress (one unit
    per item). Running it again for the same job adds no parts.
    """
    job = jobs.get(ctx, job_id)
    if not items:
        return _handler(job.kind).finish(ctx, job, state)
    chunks = [list(items[i : i + chunk]) for i in range(0, len(items), max(1, chunk))]
    now = utcnow()
    with ctx.db.session() as s:
        if s.get(JobFanout, job_id) is None:
            s.add(JobFanout(job_id=job_id, parts=len(chunks), state=state, created_at=now))
            for seq, part_items in enumerate(chunks):
                s.add(JobPart(job_id=job_id, seq=seq, items=part_items, status="pending", queued_at=now))
            s.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(progress_done=done, progress_total=len(items) + done if total is None else total, heartbeat_at=now))
        ids = list(s.scalars(select(JobPart.id).where(JobPart.job_id == job_id, JobPart.status == "pending").order_by(JobPart.seq)))
    queue = get_kind(job.kind).queue
    for part_id in ids:
        enqueue(ctx, part_id, queue)
    log.info("job %s: fanned out %d item(s) in %d part(s)", job_id, len(items), len(chunks))
    return FANNED_OUT


def part_items(ctx: Context, job_id: str) -> Iterator[list[Any]]:
    """The items of each of a job's parts, in order, one part read at a time (a finish step
    that needs every item reads them here rather than from a copy in the fan-out state)."""
    seq = -1
    while True:
        with ctx.db.session() as s:
            row = s.execute(select(JobPart.seq, JobPart.items).where(JobPart.job_id == job_id, JobPart.seq > seq).order_by(JobPart.seq).limit(1)).first()
        if row is None:
            return
        seq = row.seq
        yield list(row.items)


def enqueue(ctx: Context, part_id: int, queue: str) -> None:
    try:
        ctx.enqueue(PART_TASK, str(part_id), queue)
    except Exception:
        log.exception("part %s: enqueue failed; the reaper will enqueue it again", part_id)
        return
    with ctx.db.session() as s:
        s.execute(update(JobPart).where(JobPart.id == part_id).values(sent_at=utcnow()))


def claim(ctx: Context, part_id: int) -> str | None:
    """Move a pending part to running; None if it is not pending (taken, done, or gone)."""
    token = str(uuid.uuid4())
    now = utcnow()
    with ctx.db.session() as s:
        res = s.execute(
            update(JobPart).where(JobPart.id == part_id, JobPart.status == "pending").values(status="running", claim_token=token, attempts=JobPart.attempts + 1, heartbeat_at=now)
        )
    return token if res.rowcount == 1 else None


class _Heartbeat(threading.Thread):
    def __init__(self, ctx: Context, part_id: int, token: str):
        super().__init__(name=f"part-heartbeat-{part_id}", daemon=True)
        self.ctx, self.part_id, self.token = ctx, part_id, token
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.ctx.settings.heartbeat_seconds):
            try:
                with self.ctx.db.session() as s:
                    s.execute(update(JobPart).where(JobPart.id == self.part_id, JobPart.claim_token == self.token, JobPart.status == "running").values(heartbeat_at=utcnow()))
            except Exception:
                log.exception("part %s: heartbeat failed", self.part_id)


def run_part(ctx: Context, part_id: int) -> str:
    """Claim and do one part, count it on the parent, and finish the parent if it was the last."""
    token = claim(ctx, part_id)
    if token is None:
        return "skipped"
    with ctx.db.session() as s:
        part = s.get(JobPart, part_id)
        job = s.get(Job, part.job_id)
        items, seq = list(part.items), part.seq
    if job.status == "running":
        beat = _Heartbeat(ctx, part_id, token)
        beat.start()
        try:
            _handler(job.kind).work(ctx, job, items, seq)
        finally:
            beat.stopped.set()
    else:
        log.info("part %s: job %s is %s; nothing to do", part_id, job.id, job.status)
    last = complete(ctx, part_id, token, len(items))
    if last is None:
        return "lost"
    if last:
        finish_if_complete(ctx, job.id)
    return "done"


def complete(ctx: Context, part_id: int, token: str, size: int, error: str | None = None) -> bool | None:
    """Mark the part done and count its items on the parent, in one transaction.

    Returns True if it was the running parent's last unfinished part, False if not, None
    if the part was not ours. The parent's row, updated first, serialises the parts: the
    count that follows sees every part that completed before this one.
    """
    now = utcnow()
    with ctx.db.session() as s:
        res = s.execute(
            update(JobPart).where(JobPart.id == part_id, JobPart.claim_token == token, JobPart.status == "running").values(status="done", finished_at=now, claim_token=None, error=error)
        )
        if res.rowcount != 1:
            return None
        job_id = s.scalar(select(JobPart.job_id).where(JobPart.id == part_id))
        counted = s.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(progress_done=Job.progress_done + size, heartbeat_at=now))
        if counted.rowcount != 1:
            return False
        left = s.scalar(select(func.count()).select_from(JobPart).where(JobPart.job_id == job_id, JobPart.status != "done")) or 0
    return left == 0


def unfinished(ctx: Context, job_id: str) -> int:
    with ctx.db.session() as s:
        return s.scalar(select(func.count()).select_from(JobPart).where(JobPart.job_id == job_id, JobPart.status != "done")) or 0


def finish_if_complete(ctx: Context, job_id: str) -> bool:
    """Succeed the parent once all its parts are done; True if this call finished it.

    The last part calls it, and the reaper for a parent whose last part died before
    finishing it; `jobs.succeed` is a compare-and-set on the parent's claim token, so the
    parent succeeds once whoever calls.
    """
    if unfinished(ctx, job_id):
        return False
    with ctx.db.session() as s:
        job = s.get(Job, job_id)
        fan = s.get(JobFanout, job_id)
        if job is None or fan is None or job.status != "running" or job.claim_token is None:
            return False
        token, state = job.claim_token, dict(fan.state)
    try:
        result = _handler(job.kind).finish(ctx, job, state)
        jobs.succeed(ctx, job_id, token, result, [])
    except JobLost:
        return False
    except Exception as exc:
        log.exception("job %s: finishing after its parts failed", job_id)
        jobs.fail(ctx, job_id, token, f"{type(exc).__name__}: {exc}")
        return False
    return True


def has_parts():
    """A SQL condition: the job fanned out (its parts, not a worker, carry it)."""
    from sqlalchemy import exists

    return exists().where(JobFanout.job_id == Job.id)
