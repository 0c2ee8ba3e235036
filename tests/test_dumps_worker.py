"""The dump through a real prefork Celery worker on Redis: a public export's success submits publish_dump
on the `dumps` queue, the worker publishes it, and a mirror synced over HTTP equals the export."""

from __future__ import annotations

from exporter import jobs

from .dumps_helpers import AGENCY_ID, mirror, served
from .raids_helpers import exported, future, record, save
from .workers import WorkerProcess, redis_broker, sender, wait_for, worker_env

REDIS_DB = 6


def test_a_public_export_on_a_worker_is_followed_by_its_dump(pg_ctx, tmp_path):
    from exporter.dumps.sources import HttpSource
    from exporter.dumps.sync import sync
    from exporter.models import Job

    ctx = pg_ctx
    broker = redis_broker(REDIS_DB)
    ctx.enqueue = sender(broker)
    save(ctx, record(1), record(2, access="embargoed", expiry=future(), secret="S2"), record(3))
    worker = WorkerProcess(worker_env(ctx.settings, broker, EXPORTER_EXPORT_SETTLE_SECONDS="0"), tmp_path / "worker.log", queues="exports,dumps", pool="prefork", concurrency=1)
    try:
        export = jobs.submit(ctx, "export_public", {"agency": AGENCY_ID, "sitemaps": False})

        def dump_done():
            with ctx.db.session() as s:
                return s.query(Job).filter(Job.kind == "publish_dump", Job.status == "succeeded").first()

        dump = wait_for(dump_done, 90, "the dump publication the export submitted")
    finally:
        worker.stop()
    assert jobs.get(ctx, export.id).status == "succeeded" and dump.requested_by == f"export {export.id}"
    assert dump.result["seq"] == 1 and "exporter.publish_dump" in worker.text()
    with served(ctx) as server:
        sync(HttpSource(server.dump_url()), tmp_path / "mirror")
    assert mirror(tmp_path / "mirror") == exported(ctx, jobs.get(ctx, export.id))
