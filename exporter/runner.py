"""Running one job: claim it, heartbeat while the kind works, publish its artifacts, finish it.

Running a job twice is harmless and publication is fenced by the claim:
- artifacts are written under a staging key that belongs to this claim;
- their final keys carry `JobRun.run_id` (from the claim token), so two runs of one job
  (a reaped worker that wakes up, and the run that replaced it) never write one object;
- the last step re-checks the claim, moves the staged objects to their final keys and
  records them with the job's success in one compare-and-set transaction. A run that lost
  its claim (cancelled, reaped) meanwhile removes what it moved; whatever a crash leaves at
  a final key is named by no row, so no reader ever finds it, and cleanup removes it
  (exporter.orphans).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import jobs
from .context import Context
from .errors import ExporterError, JobLost, TransientError
from .kinds import get_kind
from .models import Job
from .parts import FANNED_OUT
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
        self._published: list[str] = []

    @property
    def run_id(self) -> str:
        """Unique to this claim of the job: every final key must contain it."""
        return self.token.replace("-", "")[:8]

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

    def _check_final_key(self, key: str) -> None:
        if self.run_id not in key:
            raise ValueError(f"artifact key {key!r} must contain the run id {self.run_id!r} (JobRun.run_id), so two runs never share an object")

    @contextmanager
    def artifact(self, name: str, key: str, filename: str | None = None, public: bool = False, content_type: str | None = None) -> Iterator[WriteHandle]:
        """Write an artifact; it is published at `key` when the job succeeds."""
        self._check_final_key(key)
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
        self._check_final_key(key)
        content_type = content_type or guess_type(key)
        info = self.storage.write(self.staging_key(name), data, content_type)
        art = jobs.NewArtifact(name=name, key=key, filename=filename or key.rsplit("/", 1)[-1], size=info.size, md5=info.md5, sha256=info.sha256, content_type=content_type, public=public)
        self._staged.append((self.staging_key(name), art))
        return art

    def publish(self) -> list[jobs.NewArtifact]:
        """Move the staged objects to their final keys (this run's own); readers find them only
        once `jobs.succeed` records them."""
        for staged, art in self._staged:
            self.storage.move(staged, art.key)
            self._published.append(art.key)
        return [art for _, art in self._staged]

    def keep_published(self) -> None:
        self._published.clear()

    def discard(self) -> None:
        """Remove this run's staged objects and any it already moved to a final key."""
        for key in self._published:
            try:
                self.storage.delete(key)
            except Exception:
                log.exception("job %s: could not remove %s; cleanup will", self.job_id, key)
        self._published.clear()
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
        if result is FANNED_OUT:
            log.info("job %s: fanned out; its parts finish it", job_id)
            return "fanned_out"
        result.setdefault("duration_seconds", round(time.monotonic() - started, 3))
        jobs.heartbeat(ctx, job_id, token)  # the fence: a run that lost its claim publishes nothing
        artifacts = run.publish()
        try:
            jobs.succeed(ctx, job_id, token, result, artifacts)
        except JobLost:
            raise
        except Exception:
            run.keep_published()  # the commit may have happened: never delete what rows may name
            raise
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
        if not isinstance(exc, ExporterError):  # a bug: its traceback; an expected error is jobs.fail's one line
            log.exception("job %s: failed", job_id)
        run.discard()
        error = f"{type(exc).__name__}: {exc}"
        if jobs.fail(ctx, job_id, token, error):
            run.outcome("failed", error)
        return "failed"
    finally:
        run.heartbeat.stopped.set()
