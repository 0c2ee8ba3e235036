"""Running one job: claim it, heartbeat while the kind works, publish its artifacts, finish it.

Running a job twice is harmless: artifacts are written under a staging key that belongs to
this claim, and published under their final keys (derived from the job, not the run) in
the last step, just before the job is marked succeeded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from . import jobs
from .context import Context
from .errors import JobLost, TransientError
from .kinds import get_kind
from .models import Job
from .storage.base import WriteHandle, guess_type

log = logging.getLogger(__name__)

STAGING = "_staging"


class Heartbeat(threading.Thread):
    """Writes the job's heartbeat every few seconds until stopped; notes if the job was lost."""

    def __init__(self, ctx: Context, job_id: str, token: str):
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.ctx, self.job_id, self.token = ctx, job_id, token
        self.stopped = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.stopped.wait(self.ctx.settings.heartbeat_seconds):
            try:
                jobs.heartbeat(self.ctx, self.job_id, self.token)
            except JobLost:
                self.lost = True
                return
            except Exception:
                log.exception("job %s: heartbeat failed", self.job_id)


class JobRun:
    """What a job kind's `run` gets: its params, storage, progress reporting and artifacts."""

    PROGRESS_EVERY = 0.5  # seconds between progress writes

    def __init__(self, ctx: Context, job: Job, token: str):
        self.ctx = ctx
        self.job = job
        self.job_id = job.id
        self.params: dict[str, Any] = job.params
        self.token = token
        self.storage = ctx.storage
        self.settings = ctx.settings
        self.log = logging.LoggerAdapter(log, {"job_id": job.id})
        self._staged: list[tuple[str, jobs.NewArtifact]] = []
        self._last_progress = 0.0
        self._outcome_hooks: list[Callable[[str, str | None, dict[str, Any] | None], None]] = []
        self.heartbeat: Heartbeat | None = None

    def on_outcome(self, hook: Callable[[str, str | None, dict[str, Any] | None], None]) -> None:
        """Call hook(status, error, result) once the job's end is committed: succeeded, failed or lost."""
        self._outcome_hooks.append(hook)

    def outcome(self, status: str, error: str | None = None, result: dict[str, Any] | None = None) -> None:
        for hook in self._outcome_hooks:
            try:
                hook(status, error, result)
            except Exception:
                log.exception("job %s: outcome hook failed", self.job_id)

    @property
    def timestamp(self) -> str:
        """The job's UTC timestamp for keys; the same on every run of the job."""
        return self.job.created_at.strftime("%Y%m%dT%H%M%SZ")

    def progress(self, done: int, total: int | None = None, force: bool = False) -> None:
        """Report progress (throttled); raises JobLost if the job was cancelled or reaped."""
        now = time.monotonic()
        if not force and now - self._last_progress < self.PROGRESS_EVERY and (total is None or done < total):
            if self.heartbeat is not None and self.heartbeat.lost:
                raise JobLost(f"job {self.job_id} is no longer ours to run")
            return
        self._last_progress = now
        jobs.progress(self.ctx, self.job_id, self.token, done, total)

    def staging_key(self, name: str) -> str:
        return f"{STAGING}/{self.job_id}/{self.token}/{name}"

    @contextmanager
    def artifact(self, name: str, key: str, filename: str | None = None, public: bool = False, content_type: str | None = None) -> Iterator[WriteHandle]:
        """Write an artifact; it is published at `key` when the job succeeds."""
        content_type = content_type or guess_type(key)
        with self.storage.open_write(self.staging_key(name), content_type) as handle:
            yield handle
        info = handle.info
        self._staged.append(
            (
                self.staging_key(name),
                jobs.NewArtifact(name=name, key=key, filename=filename or key.rsplit("/", 1)[-1], size=info.size, md5=info.md5, sha256=info.sha256, content_type=content_type, public=public),
            )
        )

    def add_artifact(self, name: str, key: str, data, filename: str | None = None, public: bool = False, content_type: str | None = None) -> jobs.NewArtifact:
        """Store bytes, a file or an iterable of chunks as an artifact."""
        content_type = content_type or guess_type(key)
        info = self.storage.write(self.staging_key(name), data, content_type)
        art = jobs.NewArtifact(name=name, key=key, filename=filename or key.rsplit("/", 1)[-1], size=info.size, md5=info.md5, sha256=info.sha256, content_type=content_type, public=public)
        self._staged.append((self.staging_key(name), art))
        return art

    def publish(self) -> list[jobs.NewArtifact]:
        for staged, art in self._staged:
            self.storage.move(staged, art.key)
        return [art for _, art in self._staged]

    def discard(self) -> None:
        try:
            self.storage.delete_prefix(f"{STAGING}/{self.job_id}/{self.token}/")
        except Exception:
            log.exception("job %s: could not remove staging objects", self.job_id)


def run_job(ctx: Context, job_id: str) -> str:
    """Claim and run a job; returns the status it ended in (or why it did not run)."""
    token = jobs.claim(ctx, job_id)
    if token is None:
        try:
            status = jobs.get(ctx, job_id).status
        except Exception:
            status = "missing"
        log.info("job %s: not claimable (status %s); nothing to do", job_id, status)
        return f"skipped:{status}"
    job = jobs.get(ctx, job_id)
    kind = get_kind(job.kind)
    run = JobRun(ctx, job, token)
    run.heartbeat = Heartbeat(ctx, job_id, token)
    run.heartbeat.start()
    started = time.monotonic()
    try:
        result = kind.run(run) or {}
        result.setdefault("duration_seconds", round(time.monotonic() - started, 3))
        artifacts = run.publish()
        jobs.succeed(ctx, job_id, token, result, artifacts)
        run.outcome("succeeded", None, result)
        return "succeeded"
    except JobLost:
        log.warning("job %s: stopped: it was cancelled or taken over", job_id)
        run.discard()
        run.outcome("lost", "the job was cancelled or taken over before it finished")
        return "lost"
    except TransientError as exc:
        run.discard()
        jobs.release(ctx, job_id, token, f"transient: {exc}")
        raise
    except Exception as exc:
        log.exception("job %s: failed", job_id)
        run.discard()
        error = f"{type(exc).__name__}: {exc}"
        if jobs.fail(ctx, job_id, token, error):
            run.outcome("failed", error)
        return "failed"
    finally:
        run.heartbeat.stopped.set()


def cleanup(ctx: Context, now=None, temporary_age_seconds: float = 86400) -> dict[str, int]:
    """Delete artifacts of expired jobs (keeping the job rows) and stale temporary objects."""
    from sqlalchemy import select

    from .db import utcnow
    from .models import Artifact

    now = now or utcnow()
    expired = 0
    deleted = 0
    with ctx.db.session() as s:
        due = s.scalars(select(Job).where(Job.status == "succeeded", Job.expires_at < now)).all()
        for job in due:
            for art in s.scalars(select(Artifact).where(Artifact.job_id == job.id, Artifact.deleted_at.is_(None))):
                deleted += ctx.storage.delete(art.key)
                art.deleted_at = now
            job.status = "expired"
            expired += 1
            log.info("job %s: expired; artifacts deleted", job.id)
    for job in due:
        jobs.finished(ctx, job.id, "expired")
    removed_tmp = ctx.storage.cleanup_temporary(temporary_age_seconds)
    cutoff = now - timedelta(seconds=temporary_age_seconds)
    for info in list(ctx.storage.list(STAGING + "/")):
        if info.modified and info.modified < cutoff:
            removed_tmp += ctx.storage.delete(info.key)
    return {"expired_jobs": expired, "deleted_objects": deleted, "removed_temporary": removed_tmp}
