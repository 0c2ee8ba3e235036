"""The Celery path with real worker processes on the Redis broker and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery import Celery

from exporter import jobs
from exporter.db import utcnow
from exporter.runner import STAGING

from .workers import WorkerProcess, redis_broker, sender, wait_for, worker_env

REDIS_DB = 13


@pytest.fixture
def broker():
    return redis_broker(REDIS_DB)


@pytest.fixture
def celery_ctx(pg_ctx, broker):
    pg_ctx.enqueue = sender(broker)
    return pg_ctx


def status(ctx, job_id):
    return jobs.get(ctx, job_id).status


def test_worker_runs_a_job_by_id(celery_ctx, broker, tmp_path):
    worker = WorkerProcess(worker_env(celery_ctx.settings, broker), tmp_path / "worker.log")
    try:
        job = jobs.submit(celery_ctx, "synthetic", {"size": 4096, "steps": 4}, requested_by="test")
        wait_for(lambda: status(celery_ctx, job.id) == "succeeded", 60, "the job to succeed")
        done = jobs.get(celery_ctx, job.id)
        assert done.attempts == 1 and done.progress_done == 4096
        assert [o.key for o in celery_ctx.storage.list("synthetic/")] == [done.artifacts[0].key]
        assert "exporter.write_synthetic" in worker.text() and job.id in worker.text()
    finally:
        worker.stop()


def test_killed_worker_mid_job_still_ends_succeeded_exactly_once(celery_ctx, broker, tmp_path):
    env = worker_env(celery_ctx.settings, broker, EXPORTER_HEARTBEAT_SECONDS="0.3", EXPORTER_STALE_AFTER_SECONDS="2")
    ctx = celery_ctx
    first = WorkerProcess(env, tmp_path / "first.log")
    try:
        job = jobs.submit(ctx, "synthetic", {"size": 20, "steps": 20, "delay": 0.25})
        wait_for(lambda: jobs.get(ctx, job.id).progress_done >= 5, 30, "the job to be half-way")
        first.kill()
    finally:
        first.stop()
    mid = jobs.get(ctx, job.id)
    assert mid.status == "running" and mid.progress_done < 20  # dead worker, stale claim
    assert list(ctx.storage.list("synthetic/")) == []

    second = WorkerProcess(env, tmp_path / "second.log")
    try:
        # The reaper, sent as beat sends it, finds the stale heartbeat and re-enqueues the job.
        wait_for(lambda: jobs.get(ctx, job.id).heartbeat_at < utcnow() - timedelta(seconds=2), 10, "the heartbeat to go stale")
        Celery(broker=broker).send_task("exporter.reap", queue="engine")
        second.wait_for_log(f"job {job.id}: reaper re-enqueues it (was running)", 30)
        wait_for(lambda: status(ctx, job.id) == "succeeded", 60, "the re-run to succeed")

        # A late duplicate of the message (e.g. Redis redelivering the unacked one) is harmless.
        ctx.enqueue("exporter.write_synthetic", job.id, "engine")
        second.wait_for_log("not claimable (status succeeded)", 30)
    finally:
        second.stop()
    done = jobs.get(ctx, job.id)
    assert (done.status, done.attempts, done.recoveries) == ("succeeded", 2, 1)
    assert len(done.artifacts) == 1
    assert [o.key for o in ctx.storage.list("synthetic/")] == [done.artifacts[0].key]
    assert ctx.storage.read_bytes(done.artifacts[0].key) == bytes(range(20))
    assert list(ctx.storage.list(STAGING + "/")) == []
    assert second.text().count(f"job {job.id}: succeeded") == 1
