"""The reaper and a real prefork worker on Redis: a job waiting behind a long one is a backlog, not a lost message."""

from __future__ import annotations

import json
import time

import redis

from exporter import jobs, reaper
from workers.broker import message_id_arg, probe_for, redis_probe

from .workers import WorkerProcess, redis_broker, sender, wait_for, worker_env

REDIS_DB = 8
QUEUE = "engine"


def messages_for(client: redis.Redis, job_id: str) -> int:
    """How many messages the broker holds for this job: queued, or reserved by a worker."""
    queued = [m for m in client.lrange(QUEUE, 0, -1) if message_id_arg(m) == job_id]
    reserved = [m for m in client.hvals("unacked") if message_id_arg(json.loads(m)[0]) == job_id]
    return len(queued) + len(reserved)


def test_a_waiting_job_is_neither_failed_nor_duplicated_and_a_lost_message_is_sent_again(pg_ctx, tmp_path):
    ctx = pg_ctx
    ctx.settings = ctx.settings.replace(pending_timeout_seconds=1)
    broker = redis_broker(REDIS_DB)
    client = redis.Redis.from_url(broker)
    ctx.enqueue = sender(broker)
    ctx.queued_ids = redis_probe(broker)
    assert probe_for(broker, {}) is not None and probe_for("amqp://guest@127.0.0.1//", {}) is None
    worker = WorkerProcess(worker_env(ctx.settings, broker), tmp_path / "worker.log", queues=QUEUE, pool="prefork", concurrency=1)
    try:
        long = jobs.submit(ctx, "synthetic", {"size": 12, "steps": 12, "delay": 0.5}, description="occupies the only worker process")
        wait_for(lambda: jobs.get(ctx, long.id).status == "running", 30, "the long job to start")
        waiting = jobs.submit(ctx, "synthetic", {"size": 5}, description="queued behind it")
        lost = jobs.submit(ctx, "synthetic", {"size": 6}, description="its message is deleted")
        for raw in client.lrange(QUEUE, 0, -1):
            if message_id_arg(raw) == lost.id:
                assert client.lrem(QUEUE, 0, raw) == 1
        assert messages_for(client, lost.id) == 0 and messages_for(client, waiting.id) == 1
        time.sleep(1.2)
        requeued: list[str] = []
        for _ in range(4):
            report = reaper.reap_jobs(ctx)
            requeued += report.requeued
            assert waiting.id in report.waiting and report.failed == []
            assert jobs.get(ctx, waiting.id).status == "pending"
            assert messages_for(client, waiting.id) == 1
            time.sleep(0.4)
        assert jobs.get(ctx, long.id).status == "running"  # the reaper ran while the backlog stood
        assert requeued == [lost.id]
        assert messages_for(client, lost.id) == 1
        wait_for(lambda: all(jobs.get(ctx, j.id).status == "succeeded" for j in (long, waiting, lost)), 60, "all three jobs to succeed", interval=0.3)
        assert client.llen(QUEUE) == 0
    finally:
        worker.stop()
    assert [jobs.get(ctx, j.id).attempts for j in (long, waiting, lost)] == [1, 1, 1]
    assert jobs.get(ctx, lost.id).recoveries == 1 and jobs.get(ctx, waiting.id).recoveries == 0
