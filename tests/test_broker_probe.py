"""The broker probes find a message's job id where each broker keeps it."""

from __future__ import annotations

import pytest
import redis
from celery import Celery

from workers.broker import probe_for

from .workers import redis_broker, sender

REDIS_DB = 7


def test_filesystem_probe_reads_kombus_message_files(tmp_path):
    folder = tmp_path / "queue"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "control_folder": str(tmp_path / "control")}
    app = Celery("probe-test", broker="filesystem://")
    app.conf.broker_transport_options = options
    app.send_task("exporter.write_synthetic", args=["job-1"], queue="engine")
    app.send_task("exporter.archive_urls", args=["job-2"], queue="archive")
    probe = probe_for("filesystem://", options)
    assert probe(["engine"]) == {"job-1"}
    assert probe(["engine", "archive"]) == {"job-1", "job-2"}


def test_redis_probe_reads_the_queue_lists():
    broker = redis_broker(REDIS_DB)
    send = sender(broker)
    send("exporter.write_synthetic", "job-a", "engine")
    send("exporter.run_part", "17", "archive")
    probe = probe_for(broker, {})
    assert probe(["engine"]) == {"job-a"} and probe(["engine", "archive"]) == {"job-a", "17"}
    assert probe_for("amqp://guest:guest@127.0.0.1:5672//", {}) is None


def test_an_unacked_message_counts_only_while_a_live_worker_holds_it():
    """A worker killed with a message reserved leaves it in `unacked` for the visibility timeout;
    the reaper must see it as lost unless a live worker says it holds it."""
    import json

    import redis

    broker = redis_broker(REDIS_DB)
    sender(broker)("exporter.write_synthetic", "job-reserved", "engine")
    client = redis.Redis.from_url(broker)
    raw = client.lpop("engine")
    client.hset("unacked", "tag-1", json.dumps([json.loads(raw), "", "engine"]))
    assert probe_for(broker, {})(["engine"]) == {"job-reserved"}  # without asking the workers: counted
    assert probe_for(broker, {}, lambda: {"job-reserved"})(["engine"]) == {"job-reserved"}  # a live worker has it
    assert probe_for(broker, {}, lambda: set())(["engine"]) == set()  # nobody has it: lost
    assert probe_for(broker, {}, lambda: None)(["engine"]) == set()  # no worker answered at all
    client.delete("unacked")


def _produce(transport, options: dict, name: str, n: int, each: int, fields: int) -> None:
    from kombu import Connection

    with Connection("filesystem://", transport=transport, transport_options=options) as conn:
        queue = conn.SimpleQueue(name)
        for i in range(each):
            queue.put({"id": f"{n}-{i}", "pad": [f"v{k}" for k in range(fields)]})


def produce_while_a_worker_reads(tmp_path, transport, producers: int = 3, each: int = 40, fields: int = 20000) -> tuple[set, list]:
    """Processes send messages through `transport` while one consumer takes them as they
    appear; returns (the ids of the messages read whole, the errors the consumer met)."""
    import multiprocessing
    import uuid
    from queue import Empty

    from kombu import Connection

    folder = tmp_path / "queue"
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "control_folder": str(tmp_path / "control"), "processed_folder": str(tmp_path / "processed"), "store_processed": True, "polling_interval": 0}
    for name in ("queue", "control", "processed"):
        (tmp_path / name).mkdir()
    name = f"q{uuid.uuid4().hex[:8]}"  # kombu's in-process exchange table outlives a connection
    procs = [multiprocessing.get_context("fork").Process(target=_produce, args=(transport, options, name, n, each, fields)) for n in range(producers)]
    got, errors = set(), []
    with Connection("filesystem://", transport=transport, transport_options=options) as conn:
        queue = conn.SimpleQueue(name)
        for p in procs:
            p.start()
        while any(p.is_alive() for p in procs) or any(folder.glob("*.msg")):
            try:
                message = queue.get(timeout=0.2)
            except Empty:
                continue
            except ValueError as exc:  # an empty or partial file: the stock transport's race
                errors.append(exc)
                continue
            got.add(message.payload["id"])
            message.ack()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return got, errors


def test_the_embedded_broker_never_hands_a_worker_a_half_written_message(tmp_path):
    """Under `exporter up` a worker polls the queue folder while parts are being sent: every
    message it takes must be whole (kombu's own transport creates the file, then writes it)."""
    from workers.fsbroker import Transport

    assert Celery("conf", config_source="celeryconfig").conf.broker_transport == "workers.fsbroker:Transport"
    got, errors = produce_while_a_worker_reads(tmp_path, Transport)
    assert errors == []
    assert got == {f"{n}-{i}" for n in range(3) for i in range(40)}
    assert not list((tmp_path / "queue").iterdir())


@pytest.mark.parametrize("kind", ["redis", "filesystem"])
def test_a_live_worker_says_it_holds_the_tasks_it_runs_reserves_or_keeps_for_a_countdown(pg_ctx, tmp_path, kind):
    """A job released after a transient error waits for Celery's retry countdown inside a
    worker (on Redis its message unacked, on the filesystem broker only in the worker's
    memory): the reaper must count it as held, not lost."""
    from exporter import jobs
    from workers.broker import inspect_held
    from workers.fsbroker import TRANSPORT, transport_options

    from .workers import WorkerProcess, wait_for, worker_env

    if kind == "redis":
        broker, options = redis_broker(REDIS_DB), {}
        app = Celery("probe-inspect", broker=broker)
        queued = lambda: redis.Redis.from_url(broker).llen("engine")  # noqa: E731
    else:
        broker, options = "filesystem://", transport_options(pg_ctx.settings.broker_folder)
        app = Celery("probe-inspect", broker=broker)
        app.conf.broker_transport, app.conf.broker_transport_options = TRANSPORT, options
        queued = lambda: list(pg_ctx.settings.broker_folder.glob("queue/*.msg"))  # noqa: E731
    worker = WorkerProcess(worker_env(pg_ctx.settings, broker), tmp_path / "worker.log", queues="engine", pool="prefork", concurrency=2)
    try:
        pg_ctx.enqueue = lambda task, job_id, queue: app.send_task(task, args=[job_id], queue=queue)
        running = jobs.submit(pg_ctx, "synthetic", {"size": 20, "steps": 20, "delay": 0.5})
        wait_for(lambda: jobs.get(pg_ctx, running.id).status == "running", 30, "the job to start")
        app.send_task("exporter.write_synthetic", args=["job-in-a-countdown"], queue="engine", countdown=300)
        wait_for(lambda: not queued(), 30, "the worker to take the countdown's message")
        assert inspect_held(app)() >= {running.id, "job-in-a-countdown"}
        assert jobs.get(pg_ctx, running.id).status == "running"
        assert probe_for(broker, options, inspect_held(app))(["engine"]) >= {running.id, "job-in-a-countdown"}
    finally:
        worker.stop()
