"""The broker probes find a message's job id where each broker keeps it."""

from __future__ import annotations

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
