"""A tiles export on a real prefork worker (Redis, PostgreSQL, nginx) is SIGKILLed mid-way; the
restarted worker resumes the GeoPackage: every tile once in the file, none fetched again that
the killed run had committed, the published file complete."""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections import Counter
from contextlib import closing
from datetime import timedelta

from celery import Celery

from exporter import jobs, submissions
from exporter.db import utcnow
from exporter.tiles import export, grid, layers
from exporter.tiles.requests import normalize_tiles_request
from tests.archiver_fixtures import nginx  # noqa: F401
from tests.tiles_fixtures import box_roi, roi_tiles, validate_gpkg, write_tiles

from .workers import WorkerProcess, redis_broker, sender, wait_for, worker_env

REDIS_DB = 14
ROI = box_roi(34.0, 31.0, 36.0, 33.0, grid.resolution(11), grid.resolution(8))
REQUEST = re.compile(r'"GET /([^ ]+) HTTP')


def requested(nginx, folder: str) -> Counter:  # noqa: F811
    return Counter(m.group(1) for line in nginx.access_log() if (m := REQUEST.search(line)) and m.group(1).startswith(folder + "/"))


def test_a_killed_worker_resumes_the_geopackage_and_fetches_nothing_twice(pg_ctx, nginx, tmp_path):  # noqa: F811
    ctx = pg_ctx
    broker = redis_broker(REDIS_DB)
    ctx.enqueue = sender(broker)
    expected = roi_tiles(ROI, 12)
    folder = f"kill-{uuid.uuid4().hex[:8]}"
    write_tiles(nginx.root / folder, expected)
    layers.add_layer(ctx, "killme", url_template=f"{nginx.url}/{folder}/{{z}}/{{x}}/{{y}}.png", max_zoom=12)
    commit_every = 20
    env = worker_env(
        ctx.settings, broker, EXPORTER_HEARTBEAT_SECONDS="0.3", EXPORTER_STALE_AFTER_SECONDS="2",
        EXPORTER_ARCHIVER_ALLOW_NETWORKS="127.0.0.1/32", EXPORTER_ARCHIVER_HOST_DELAY_MS="10", EXPORTER_ARCHIVER_HOST_CONCURRENCY="4",
        EXPORTER_ARCHIVER_CONNECT_TIMEOUT="1", EXPORTER_ARCHIVER_READ_TIMEOUT="2", EXPORTER_ARCHIVER_RETRY_AFTER_MAX="0.2",
        EXPORTER_ARCHIVER_RETRY_BACKOFF_MS="5", EXPORTER_TILES_FETCH_THREADS="2", EXPORTER_TILES_COMMIT_EVERY=str(commit_every),
    )
    first = WorkerProcess(env, tmp_path / "first.log", queues="exports,engine", pool="prefork", concurrency=1)
    try:
        sub = submissions.request_job(ctx, "tiles", normalize_tiles_request({"layer": "killme", "roi": ROI}, ctx), requested_by="test")
        job_id = sub.job.id
        wait_for(lambda: jobs.get(ctx, job_id).progress_done >= len(expected) // 3, 60, "a third of the tiles", interval=0.05)
        first.kill()
    finally:
        first.stop()
    mid = jobs.get(ctx, job_id)
    assert mid.status == "running" and mid.progress_done < len(expected)
    assert list(ctx.storage.list("tiles/")) == []  # nothing published by the dead run
    work = export.work_dir(ctx.settings, job_id) / "tiles.gpkg"
    with closing(sqlite3.connect(work)) as db:
        committed = {(z, c, r) for z, c, r in db.execute('SELECT zoom_level, tile_column, tile_row FROM "killme"')}
    assert len(committed) >= commit_every

    second = WorkerProcess(env, tmp_path / "second.log", queues="exports,engine", pool="prefork", concurrency=1)
    try:
        wait_for(lambda: jobs.get(ctx, job_id).heartbeat_at < utcnow() - timedelta(seconds=2), 10, "the heartbeat to go stale")
        Celery(broker=broker).send_task("exporter.reap", queue="engine")
        wait_for(lambda: jobs.get(ctx, job_id).status in ("succeeded", "failed"), 120, "the resumed export to end", interval=0.2)
        second.wait_for_log(f"resuming: {len(committed)} of {len(expected)} tiles already done", 10)
        # The work folder goes in the outcome hook, just after the success is committed: wait for
        # it while the worker still runs (stopping it first could cut the hook off).
        wait_for(lambda: not export.work_dir(ctx.settings, job_id).exists(), 30, "the work folder to be removed")
    finally:
        second.stop()
    done = jobs.get(ctx, job_id)
    assert done.status == "succeeded", done.error
    assert (done.attempts, done.recoveries, done.result["resumed_from"]) == (2, 1, len(committed))
    path = ctx.storage.path(next(a.key for a in done.artifacts if a.name == "data"))
    assert validate_gpkg(path) == []
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute('SELECT zoom_level, tile_column, tile_row FROM "killme"').fetchall()
    assert len(rows) == len(set(rows)) == len(expected) and set(rows) == set(expected)

    asked = requested(nginx, folder)
    for z, c, r in committed:
        assert asked[f"{folder}/{z}/{c}/{r}.png"] == 1  # written before the kill: never fetched again
    again = sum(asked.values()) - len(expected)
    assert 0 <= again <= commit_every + 2 * 8  # the uncommitted batch and the requests in flight
    assert len(asked) == len(expected)
    assert [o.key for o in ctx.storage.list("tiles/")] == sorted(a.key for a in done.artifacts)
