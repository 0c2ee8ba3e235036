"""Cleanup (celery beat's `exporter.cleanup`): expire finished jobs past their expiry, delete
their objects after that commit, run the families' retention rules (`register`), and remove
leftovers of interrupted writes and runs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from . import jobs, orphans
from .context import Context
from .db import utcnow
from .models import Artifact, Job
from .runner import STAGING

log = logging.getLogger(__name__)

Retention = Callable[[Context, datetime], int]  # deletes what an area keeps no longer at `now`; returns the objects deleted
_retention: dict[str, Retention] = {}


def register(name: str, retention: Retention) -> None:
    """Have cleanup run `retention(ctx, now)` (a family's own retention rule), its count reported as `name`.
    It follows expire() below: a compare-and-set commits what is deleted, the objects go after the commit."""
    _retention[name] = retention


def retentions() -> dict[str, Retention]:
    from .kinds import load_all

    load_all()  # the families register theirs when their kinds load
    return dict(_retention)


def expiry_due(ctx: Context, now) -> list[tuple[str, Any]]:
    """(job id, expires_at as read) of succeeded jobs whose expiry has passed."""
    with ctx.db.session() as s:
        return [tuple(row) for row in s.execute(select(Job.id, Job.expires_at).where(Job.status == "succeeded", Job.expires_at < now))]


def expire(ctx: Context, job_id: str, expires_at, now) -> list[str] | None:
    """Expire one job if its expiry is still the one read (compare-and-set); returns the keys to delete.

    The job and its artifacts are marked in one committed transaction; the objects are deleted
    by the caller only after that commit, so a failed commit never leaves rows naming deleted
    objects (a crash after it leaves only orphans, which cleanup removes later).
    """
    with ctx.db.session() as s:
        hit = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "succeeded", Job.expires_at == expires_at, Job.expires_at < now)
            .values(status="expired")
            .execution_options(synchronize_session=False)
        ).rowcount
        if hit != 1:
            return None
        arts = s.scalars(select(Artifact).where(Artifact.job_id == job_id, Artifact.deleted_at.is_(None))).all()
        for art in arts:
            art.deleted_at = now
        keys = [art.key for art in arts]
        after = jobs.on_final(ctx, s, job_id, "expired")
    jobs.after_commit(job_id, after)
    return keys


def run(ctx: Context, now=None, temporary_age_seconds: float = 86400, orphan_grace_seconds: float | None = None) -> dict[str, int]:
    """Delete artifacts of expired jobs (keeping the job rows), stale temporary and staging
    objects, and objects at final keys that no row names (exporter.orphans)."""
    now = now or utcnow()
    expired = 0
    deleted = 0
    for job_id, expires_at in expiry_due(ctx, now):
        try:
            keys = expire(ctx, job_id, expires_at, now)
        except Exception:  # rolled back alone: one job's error stops no other's expiry
            log.exception("job %s: could not expire it; cleanup tries again at its next run", job_id)
            continue
        if keys is None:
            log.info("job %s: expiry moved while cleaning up; kept", job_id)
            continue
        expired += 1
        for key in keys:
            deleted += ctx.storage.delete(key)
        log.info("job %s: expired; artifacts deleted", job_id)
    removed_tmp = ctx.storage.cleanup_temporary(temporary_age_seconds)
    cutoff = now - timedelta(seconds=temporary_age_seconds)
    for info in list(ctx.storage.list(STAGING + "/")):
        if info.modified and info.modified < cutoff:
            removed_tmp += ctx.storage.delete(info.key)
    kept_no_longer = {name: retention(ctx, now) for name, retention in retentions().items()}
    grace = ctx.settings.orphan_grace_seconds if orphan_grace_seconds is None else orphan_grace_seconds
    removed_orphans = orphans.remove(ctx, now, grace)
    return {"expired_jobs": expired, "deleted_objects": deleted, "removed_temporary": removed_tmp, "removed_orphans": removed_orphans, **kept_no_longer}
