"""A collection batch on real prefork workers over Redis: the worker is SIGKILLed halfway through the
batch; the reaper gives the job to a second worker, which finishes it from the files the first one
left in quarantine. The batch ends once: every file retrieved and converted, one job success, the
owner's e-mails (aiosmtpd) sent once; approved, it is published by the worker."""

from __future__ import annotations

from sqlalchemy import select

from exporter import cleanup, jobs, reaper
from exporter.collections import batches, projects, views
from exporter.collections.models import CollectionFile

from .collections_helpers import SmtpServer, make_small_png
from .workers import WorkerProcess, redis_broker, sender, wait_for, worker_env

REDIS_DB = 5
FILES = 24


def make_photo(path, seed: int) -> None:
    """An 800x600 PNG of noise (about 1.4 MB): over Zooniverse's limit, so each is re-encoded."""
    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(path, compress_level=1)


def test_a_worker_killed_mid_batch_leaves_a_batch_that_finishes_once(pg_ctx, tmp_path):
    ctx = pg_ctx
    smtp = SmtpServer().start()
    roots = tmp_path / "sources"
    folder = roots / "zoo"
    folder.mkdir(parents=True)
    for i in range(FILES):
        make_photo(folder / f"img{i:02d}.png", i)
    make_small_png(folder / "tiny.png", 99)
    settings = dict(collections_source_roots=str(roots), collections_settle_seconds=0, stale_after_seconds=2, smtp_host="127.0.0.1", smtp_port=smtp.port)
    ctx.settings = ctx.settings.replace(**settings)
    broker = redis_broker(REDIS_DB)
    ctx.enqueue = sender(broker)
    env = worker_env(
        ctx.settings, broker, EXPORTER_COLLECTIONS_SOURCE_ROOTS=str(roots), EXPORTER_HEARTBEAT_SECONDS="0.3", EXPORTER_STALE_AFTER_SECONDS="2",
        EXPORTER_SMTP_HOST="127.0.0.1", EXPORTER_SMTP_PORT=str(smtp.port),
    )
    first = WorkerProcess(env, tmp_path / "worker-1.log", pool="prefork", concurrency=2)
    second = None
    try:
        projects.add_project(ctx, "zoo", str(folder), "pi@example.org")
        polled = batches.poll_project(ctx, "zoo")
        total = 2 * (FILES + 1)
        wait_for(lambda: (jobs.get(ctx, polled.job_id).progress_done or 0) >= FILES // 2, 120, "the worker to be halfway through the batch", interval=0.05)
        first.kill()
        first.stop()
        job = jobs.get(ctx, polled.job_id)
        assert job.status == "running" and 0 < job.progress_done < total
        with ctx.db.session() as s:
            done_before = {f.id: f.quarantine_key for f in s.scalars(select(CollectionFile).where(CollectionFile.quarantine_key.is_not(None)))}
        assert done_before and views.get_batch(ctx, polled.batch_id, files=False)["state"] in ("retrieving", "converting")

        wait_for(lambda: polled.job_id in reaper.reap_jobs(ctx).requeued, 30, "the reaper to find the dead worker's job", interval=0.5)
        second = WorkerProcess(env, tmp_path / "worker-2.log", pool="prefork", concurrency=2)
        done = wait_for(lambda: (j := jobs.get(ctx, polled.job_id)).status in ("succeeded", "failed") and j, 120, "the batch job to end")
        assert done.status == "succeeded", done.error
        assert done.attempts == 2
        view = views.get_batch(ctx, polled.batch_id)
        assert view["state"] == "awaiting_approval" and view["counts"]["converted"] == FILES + 1 and view["counts"]["retrieved"] == FILES + 1
        with ctx.db.session() as s:
            rows = list(s.scalars(select(CollectionFile).where(CollectionFile.batch_id == polled.batch_id)))
        assert all(f.sha256 and f.converted_key and f.converted_size <= 1_000_000 for f in rows)
        assert all(next(r for r in rows if r.id == fid).quarantine_key == key for fid, key in done_before.items())  # nothing retrieved twice
        mails = smtp.wait_for(2)
        assert sorted(m["Subject"].strip() for m in mails) == ["zoo: batch 1 is waiting for approval", "zoo: batch 1 retrieved (25 files); you may remove them from your collection"]

        batches.approve(ctx, polled.batch_id, by="alice")
        wait_for(lambda: views.get_batch(ctx, polled.batch_id, files=False)["state"] in ("published", "failed"), 120, "the worker to publish the batch")
        published = views.get_batch(ctx, polled.batch_id, files=False)
        assert published["state"] == "published" and published["manifestURL"].endswith("/manifest.csv")
        smtp.wait_for(4)
    finally:
        if second is not None:
            second.stop()
        smtp.stop()
    text = first.text() + second.text()
    assert text.count(f"job {polled.job_id}: succeeded") == 1
    assert f"job {polled.job_id}: succeeded" in second.text()
    assert len([m for m in smtp.messages if "retrieved" in m["Subject"]]) == 1
    cleanup.run(ctx, temporary_age_seconds=0, orphan_grace_seconds=0)
    with ctx.db.session() as s:
        named = {k for row in s.execute(select(CollectionFile.quarantine_key, CollectionFile.converted_key)) for k in row}
    assert {o.key for o in ctx.storage.list("quarantine/")} == named  # what the killed run left at a final key is gone
