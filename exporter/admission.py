"""Admission: refuse an export that would not fit in the storage left, before it starts.

Free space is what the backend reports (a local folder's disk), or, with STORAGE_QUOTA_BYTES,
the quota minus what live artifacts use (the only way to know it on S3). From it we take
away what pending and running jobs are still expected to write: their estimate (kept in
`job_estimates` when they were admitted) minus the share their progress says is done.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from .db import Base
from .errors import ExporterError
from .kinds import load_all
from .models import ACTIVE_STATUSES, Artifact, Job

log = logging.getLogger(__name__)



class JobEstimate(Base):
    __tablename__ = "job_estimates"

    job_id: Mapped[str] = mapped_column(String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    estimated_bytes: Mapped[int] = mapped_column(BigInteger)


class InsufficientStorage(ExporterError):
    """The export would not fit: the message says how much it needs and how much is left."""

    def __init__(self, needed: int, free: int, reserved: int):
        self.needed, self.free, self.reserved = needed, free, reserved
        available = max(0, free - reserved)
        super().__init__(
            f"not enough storage for this export: it needs about {human(needed)}, but only "
            f"{human(available)} is available ({human(free)} free, {human(reserved)} still to be "
            "written by running jobs); try again when running jobs have finished or old exports have expired"
        )


@dataclass
class StorageUsage:
    free: int | None
    total: int | None
    used: int  # bytes of live artifacts this service keeps
    reserved: int = 0  # bytes pending and running jobs are still expected to write


def human(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"


def estimate(ctx, kind: str, params: dict[str, Any]) -> int | None:
    """Bytes a job of `kind` with these (normalized) params is expected to write, if known."""
    spec = load_all().get(kind)
    if spec is None or spec.estimate is None:  # the kind says nothing: admitted without a size check
        return None
    value = spec.estimate(ctx, kind, params)
    return None if value is None else max(0, int(value))


def used_bytes(session: Session) -> int:
    return int(session.scalar(select(func.coalesce(func.sum(Artifact.size), 0)).where(Artifact.deleted_at.is_(None))) or 0)


def reserved_bytes(session: Session) -> int:
    """What admitted pending/running jobs are still expected to write."""
    rows = session.execute(
        select(JobEstimate.estimated_bytes, Job.progress_done, Job.progress_total)
        .join(Job, Job.id == JobEstimate.job_id)
        .where(Job.status.in_(ACTIVE_STATUSES))
    )
    total = 0
    for estimated, done, of in rows:
        share_done = min(1.0, done / of) if of else 0.0
        total += int(estimated * (1.0 - share_done))
    return total


def storage_usage(ctx, session: Session | None = None) -> StorageUsage:
    """Free and total bytes of the storage in use, the quota applied when there is one."""
    if session is None:
        with ctx.db.session() as s:
            return storage_usage(ctx, s)
    free, total = ctx.storage.usage()
    used = used_bytes(session)
    quota = ctx.settings.storage_quota_bytes
    if quota:
        left = max(0, quota - used)
        free = left if free is None else min(free, left)
        total = quota if total is None else min(total, quota)
    return StorageUsage(free=free, total=total, used=used, reserved=reserved_bytes(session))


def admit(ctx, session: Session, kind: str, params: dict[str, Any]) -> int | None:
    """Raise InsufficientStorage when the job would not fit; returns its estimate (None: unknown)."""
    needed = estimate(ctx, kind, params)
    if needed is None:
        return None
    usage = storage_usage(ctx, session)
    if usage.free is None:
        return needed  # the backend does not say (S3 without STORAGE_QUOTA_BYTES)
    if needed > usage.free - usage.reserved:
        raise InsufficientStorage(needed, usage.free, usage.reserved)
    return needed


def record_estimate(session: Session, job_id: str, estimated_bytes: int) -> None:
    session.add(JobEstimate(job_id=job_id, estimated_bytes=estimated_bytes))
