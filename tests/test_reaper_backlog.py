"""The reaper and a real prefork worker on Redis: a job waiting behind a long one is a backlog, not a lost message."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import redis
from celery import Celery
from kombu import Connection

from exporter import jobs, reaper
from exporter.db import utcnow
from workers.broker import message_id_arg, probe_for, redis_probe
from workers.fsbroker import TRANSPORT, transport_options

from .conftest import require_service
from .workers import WorkerProcess, redis_broker, sender, wait_for, worker_env

REDIS_DB = 8
QUEUE = "engine"


def messages_for(client: redis.Redis, job_id: str) -> int:
    """How many messages the broker holds for this job: queued, or reserved by a worker."""
    queued = [m for m in client.lrange(QUEUE, 0, -1) if message_id_arg(m) == job_id]
    reserved = [m for m in client.hvals("unacked") if message_id_arg(json.loads(m)[0]) == job_id]
    return len(queued) + len(reserved)


def reap_while_the_backlog_stands(ctx, long, waiting, one_message) -> list[str]:
    """Run the reaper a few times past the pending timeout while `long` holds the only worker
    process: `waiting` is never failed or re-sent (`one_message()` holds). Returns what it re-sent."""
    time.sleep(1.2)
    requeued: list[str] = []
    for _ in range(4):
        report = reaper.reap_jobs(ctx)
        requeued += report.requeued
        assert waiting.id in report.waiting and report.failed == []
        assert jobs.get(ctx, waiting.id).status == "pending"
        assert one_message()
        time.sleep(0.3)
    assert jobs.get(ctx, long.id).status == "running"  # the reaper ran while the backlog stood
    return requeued


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
        assert reap_while_the_backlog_stands(ctx, long, waiting, lambda: messages_for(client, waiting.id) == 1) == [lost.id]
        assert messages_for(client, lost.id) == 1
        wait_for(lambda: all(jobs.get(ctx, j.id).status == "succeeded" for j in (long, waiting, lost)), 60, "all three jobs to succeed", interval=0.3)
        assert client.llen(QUEUE) == 0
    finally:
        worker.stop()
    assert [jobs.get(ctx, j.id).attempts for j in (long, waiting, lost)] == [1, 1, 1]
    assert jobs.get(ctx, lost.id).recoveries == 1 and jobs.get(ctx, waiting.id).recoveries == 0


AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def amqp_ready(queue: str) -> int:
    """Messages RabbitMQ holds ready on the queue (not those a consumer has unacked)."""
    with Connection(AMQP_URL) as conn:
        return conn.default_channel.queue_declare(queue, passive=True).message_count


def test_a_job_whose_message_was_never_sent_is_sent_by_the_reaper_where_the_broker_cannot_be_asked(ctx):
    """AMQP cannot say which messages it holds, but it keeps every message it confirmed: a
    pending job is re-sent only when its message never reached the broker."""
    ctx.settings = ctx.settings.replace(pending_timeout_seconds=1)
    assert ctx.queued_ids is None
    sent = jobs.submit(ctx, "synthetic", {"size": 3})

    def refused(task, job_id, queue):
        raise ConnectionError("broker refused the connection")

    ctx.enqueue = refused
    never = jobs.submit(ctx, "synthetic", {"size": 4})
    assert jobs.get(ctx, sent.id).sent_at is not None and jobs.get(ctx, never.id).sent_at is None
    ctx.enqueue = lambda task, job_id, queue: ctx.sent.append((task, job_id, queue))
    ctx.sent.clear()
    later = utcnow() + timedelta(seconds=2)
    report = reaper.reap_jobs(ctx, now=later)
    assert (report.requeued, report.waiting, report.failed) == ([never.id], [sent.id], [])
    assert [j for _, j, _ in ctx.sent] == [never.id] and jobs.get(ctx, never.id).sent_at is not None
    report = reaper.reap_jobs(ctx, now=later + timedelta(seconds=2))
    assert report.requeued == [] and sorted(report.waiting) == sorted([sent.id, never.id])


def test_on_rabbitmq_a_backlog_waits_and_a_message_never_sent_is_sent_once(pg_ctx, tmp_path):
    require_service("RabbitMQ", "127.0.0.1", 5672)
    ctx = pg_ctx
    ctx.settings = ctx.settings.replace(pending_timeout_seconds=1)
    with Connection(AMQP_URL) as conn:
        conn.default_channel.queue_delete(QUEUE)  # the worker declares it afresh, as Celery does
    app = Celery("test-amqp-sender", broker=AMQP_URL)
    app.conf.broker_transport_options = {"confirm_publish": True}
    ctx.enqueue = lambda task, job_id, queue: app.send_task(task, args=[job_id], queue=queue)
    assert probe_for(AMQP_URL, {}) is None
    worker = WorkerProcess(worker_env(ctx.settings, AMQP_URL), tmp_path / "worker.log", queues=QUEUE, pool="prefork", concurrency=1)
    try:
        long = jobs.submit(ctx, "synthetic", {"size": 20, "steps": 20, "delay": 0.5}, description="occupies the only worker process")
        wait_for(lambda: jobs.get(ctx, long.id).status == "running", 30, "the long job to start")
        waiting = jobs.submit(ctx, "synthetic", {"size": 5}, description="queued behind it")
        broker = ctx.enqueue

        def down(task, job_id, queue):
            raise ConnectionError("RabbitMQ is restarting")

        ctx.enqueue = down
        never = jobs.submit(ctx, "synthetic", {"size": 6}, description="its send failed")
        ctx.enqueue = broker
        assert amqp_ready(QUEUE) == 1
        assert reap_while_the_backlog_stands(ctx, long, waiting, lambda: True) == [never.id]
        assert amqp_ready(QUEUE) == 2  # the waiting job's one message and the never-sent job's first
        wait_for(lambda: all(jobs.get(ctx, j.id).status == "succeeded" for j in (long, waiting, never)), 60, "all three jobs to succeed", interval=0.3)
        assert amqp_ready(QUEUE) == 0
    finally:
        worker.stop()
    assert [jobs.get(ctx, j.id).attempts for j in (long, waiting, never)] == [1, 1, 1]
    assert jobs.get(ctx, never.id).recoveries == 1 and jobs.get(ctx, waiting.id).recoveries == 0


def test_on_the_embedded_filesystem_broker_a_backlog_waits_and_a_lost_message_is_sent_again(pg_ctx, tmp_path):
    """The broker `exporter up` uses by default: its queue is a folder of message files."""
    ctx = pg_ctx
    ctx.settings = ctx.settings.replace(pending_timeout_seconds=1)
    options = transport_options(ctx.settings.broker_folder)
    folder = Path(options["data_folder_in"])
    app = Celery("test-fs-sender", broker="filesystem://")
    app.conf.broker_transport, app.conf.broker_transport_options = TRANSPORT, options
    ctx.enqueue = lambda task, job_id, queue: app.send_task(task, args=[job_id], queue=queue)
    ctx.queued_ids = probe_for("filesystem://", options)

    def files_for(job_id: str) -> list[Path]:
        return [p for p in folder.glob(f"*.{QUEUE}.msg") if message_id_arg(p.read_bytes()) == job_id]

    worker = WorkerProcess(worker_env(ctx.settings, "filesystem://"), tmp_path / "worker.log", queues=QUEUE, pool="prefork", concurrency=1)
    try:
        long = jobs.submit(ctx, "synthetic", {"size": 20, "steps": 20, "delay": 0.5}, description="occupies the only worker process")
        wait_for(lambda: jobs.get(ctx, long.id).status == "running", 30, "the long job to start")
        waiting = jobs.submit(ctx, "synthetic", {"size": 5}, description="queued behind it")
        lost = jobs.submit(ctx, "synthetic", {"size": 6}, description="its message file is deleted")
        [message] = files_for(lost.id)
        message.unlink()
        assert len(files_for(waiting.id)) == 1
        assert reap_while_the_backlog_stands(ctx, long, waiting, lambda: len(files_for(waiting.id)) == 1) == [lost.id]
        assert len(files_for(lost.id)) == 1
        wait_for(lambda: all(jobs.get(ctx, j.id).status == "succeeded" for j in (long, waiting, lost)), 60, "all three jobs to succeed", interval=0.3)
        assert list(folder.glob("*.msg")) == []
    finally:
        worker.stop()
    assert [jobs.get(ctx, j.id).attempts for j in (long, waiting, lost)] == [1, 1, 1]
    assert jobs.get(ctx, lost.id).recoveries == 1 and jobs.get(ctx, waiting.id).recoveries == 0


def test_messages_the_broker_lost_do_not_count_against_a_job_whose_worker_then_dies(ctx):
    """A job re-sent because the broker lost its message (restarts) has waited, not failed:
    only its own runs that died count towards MAX_ATTEMPTS."""
    ctx.queued_ids = lambda queues: set()  # every message is lost
    job = jobs.submit(ctx, "synthetic", {"size": 3})
    later = utcnow()
    for _ in range(ctx.settings.max_attempts + 1):
        later += timedelta(seconds=ctx.settings.pending_timeout_seconds + 1)
        assert reaper.reap_jobs(ctx, now=later).requeued == [job.id]
    assert jobs.claim(ctx, job.id)  # at last a worker takes it, and dies
    report = reaper.reap_jobs(ctx, now=later + timedelta(seconds=ctx.settings.stale_after_seconds + 1))
    assert (report.requeued, report.failed) == ([job.id], [])
    assert jobs.get(ctx, job.id).status == "pending"
