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
