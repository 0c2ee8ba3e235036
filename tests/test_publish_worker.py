"""A real prefork Celery worker SIGKILLed after the last file is committed on Zenodo and before the publish:
a second worker resumes the job from the database and publishes one version, from one draft,
without sending any file again."""

from __future__ import annotations

import threading

from sqlalchemy import select

from exporter import jobs, reaper
from exporter.publish import zenodo
from exporter.publish.models import ZenodoFile, ZenodoVersion

from .raids_helpers import AGENCY, record, run_export, save
from .workers import WorkerProcess, redis_broker, sender, wait_for, worker_env
from .zenodo_fake import TOKEN, FakeZenodo

REDIS_DB = 15


def test_a_worker_killed_between_the_upload_and_the_publish_resumes_without_a_duplicate(pg_ctx, tmp_path):
    ctx = pg_ctx
    ctx.settings = ctx.settings.replace(export_settle_seconds=0, stale_after_seconds=2)
    fake = FakeZenodo().start()
    ctx.settings = ctx.settings.replace(zenodo_url=fake.api, zenodo_token=TOKEN)
    broker = redis_broker(REDIS_DB)
    ctx.enqueue = sender(broker)
    save(ctx, record(1), record(2, access="embargoed"))
    export = run_export(ctx, "export_public", {"agency": AGENCY})
    env = worker_env(
        ctx.settings, broker,
        EXPORTER_ZENODO_URL=fake.api, EXPORTER_ZENODO_TOKEN=TOKEN, EXPORTER_ZENODO_ALLOW_NETWORKS="127.0.0.1/32",
        EXPORTER_HEARTBEAT_SECONDS="0.3", EXPORTER_STALE_AFTER_SECONDS="2",
    )
    first = WorkerProcess(env, tmp_path / "worker-1.log", queues="publish", pool="prefork", concurrency=1)
    killed = threading.Event()

    def kill_at_the_last_commit(record_id: str, key: str, files: dict) -> None:
        if not killed.is_set() and len(files) == len(zenodo.FILE_ARTIFACTS) and all(f["status"] == "completed" for f in files.values()):
            killed.set()
            first.kill()  # committed on Zenodo; the worker never hears the answer

    fake.on_commit = kill_at_the_last_commit
    second = None
    try:
        job = zenodo.request_publication(ctx, AGENCY, requested_by="test")
        wait_for(killed.is_set, 60, "the worker to commit the last file")
        first.stop()
        assert jobs.get(ctx, job.id).status == "running" and fake.published() == [] and len(fake.drafts()) == 1
        with ctx.db.session() as s:
            version = s.scalars(select(ZenodoVersion)).one()
            assert version.state == "draft" and version.draft_id == fake.drafts()[0]["id"]
            assert sum(f.committed_md5 is not None for f in s.scalars(select(ZenodoFile))) == len(zenodo.FILE_ARTIFACTS) - 1

        wait_for(lambda: job.id in reaper.reap_jobs(ctx).requeued, 30, "the reaper to find the dead worker's job", interval=0.5)
        second = WorkerProcess(env, tmp_path / "worker-2.log", queues="publish", pool="prefork", concurrency=1)
        done = wait_for(lambda: (j := jobs.get(ctx, job.id)).status in ("succeeded", "failed") and j, 60, "the job to end")
    finally:
        if second is not None:
            second.stop()
        fake.stop()

    assert done.status == "succeeded", done.error
    assert done.attempts == 2 and done.result["status"] == "published"
    [rec] = fake.published()
    assert fake.drafts() == [] and len(fake.records) == 1 and fake.count("POST", exact="/api/records") == 1
    assert fake.count("POST", "/actions/publish") == 1 and fake.count("POST", "/versions") == 0
    assert set(fake.uploads.values()) == {1}  # no file was sent twice
    expected = {a.filename: a.md5 for a in export.artifacts if a.name in zenodo.FILE_ARTIFACTS}
    assert {k: f["checksum"] for k, f in fake.files_of(rec["id"]).items()} == {k: "md5:" + v for k, v in expected.items()}
    assert {f["key"]: f["md5"] for f in done.result["files"]} == expected and done.result["record_id"] == rec["id"]
    with ctx.db.session() as s:
        assert {f.key: f.committed_md5 for f in s.scalars(select(ZenodoFile))} == expected
        assert s.scalars(select(ZenodoVersion)).one().state == "published"
    assert f"job {job.id}: succeeded" not in first.text() and second.text().count(f"job {job.id}: succeeded") == 1
