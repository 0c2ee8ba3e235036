"""Two portal sweeps at once through a real prefork worker on Redis: neither waits for the other's archiving."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from sqlalchemy import select

from exporter import jobs
from exporter.archiver.models import ArchiveVersion, Resource
from exporter.archiver.portals import add_portal
from tests.archiver_fixtures import ARCHIVER_TEST_SETTINGS, nginx  # noqa: F401
from tests.http_servers import FakeCKAN, ckan_package

from .workers import WorkerProcess, redis_broker, sender, wait_for, worker_env

REDIS_DB = 9
DATASETS = 7


def _portal(nginx, tag: str) -> FakeCKAN:  # noqa: F811
    packages = []
    for i in range(DATASETS):
        name = f"{tag}-{i}"
        (nginx.root / f"{name}.csv").write_bytes(f"{tag},{i}\n".encode())
        packages.append(ckan_package(name, "org", [(f"{name}-r", f"{nginx.url}/{name}.csv")]))
    return FakeCKAN(packages, max_rows=5).start()


@pytest.mark.parametrize("concurrency", [1, 2])
def test_two_sweeps_at_once_finish_on_prefork_workers(pg_ctx, nginx, tmp_path, concurrency):  # noqa: F811
    ctx = pg_ctx
    ctx.settings = ctx.settings.replace(**ARCHIVER_TEST_SETTINGS)
    broker = redis_broker(REDIS_DB)
    ctx.enqueue = sender(broker)
    run = uuid.uuid4().hex[:6]
    sites = [_portal(nginx, f"a{run}"), _portal(nginx, f"b{run}")]
    env = worker_env(ctx.settings, broker, EXPORTER_ARCHIVER_ALLOW_NETWORKS="127.0.0.1/32", EXPORTER_ARCHIVER_HOST_DELAY_MS="0", EXPORTER_ARCHIVER_BATCH_SIZE="2")
    worker = WorkerProcess(env, tmp_path / "worker.log", queues="archive", pool="prefork", concurrency=concurrency)
    try:
        names = [f"p{run}-{i}" for i in range(2)]
        for name, site in zip(names, sites, strict=True):
            add_portal(ctx, name, site.url)
        sweeps = [jobs.submit(ctx, "sweep_portal", {"portal": name}) for name in names]
        done = wait_for(lambda: all(jobs.get(ctx, j.id).status in ("succeeded", "failed") for j in sweeps), 60, "both sweeps to finish", interval=0.3)
        assert done
    finally:
        worker.stop()
        for site in sites:
            site.stop()
    for sweep in sweeps:
        job = jobs.get(ctx, sweep.id)
        assert job.status == "succeeded", job.error
        assert (job.result["due"], job.result["checked"]) == (DATASETS, DATASETS)
        assert job.result["statuses"] == {"Archived successfully": DATASETS}
    with ctx.db.session() as s:
        ids = list(s.scalars(select(Resource.id).where(Resource.package_name.like(f"%{run}-%"))))
        versions = Counter(s.scalars(select(ArchiveVersion.resource_id).where(ArchiveVersion.resource_id.in_(ids))))
    assert len(ids) == 2 * DATASETS
    assert all(versions[rid] == 1 for rid in ids), versions


def test_sweeps_on_a_prefork_worker_mark_nothing_gone_that_the_token_no_longer_reads(pg_ctx, nginx, tmp_path):  # noqa: F811
    """Sweeps run by a real worker process: after the portal's token loses one organization (a
    share of the portal under ARCHIVER_GONE_MAX_PERCENT), three more sweeps mark none of its
    private resources gone; a dataset really deleted is marked gone after two."""
    ctx = pg_ctx
    ctx.settings = ctx.settings.replace(**ARCHIVER_TEST_SETTINGS)
    broker = redis_broker(REDIS_DB)
    ctx.enqueue = sender(broker)
    run = uuid.uuid4().hex[:6]
    token = f"token-{run}"
    (nginx.root / f"{run}.csv").write_bytes(b"w,1\n")
    url = f"{nginx.url}/{run}.csv"
    packages = [ckan_package(f"{run}-pub-{i}", "pub", [(f"{run}-pub-{i}-r", url)]) for i in range(18)]
    packages += [ckan_package(f"{run}-alpha", "alpha", [(f"{run}-alpha-r", url)]), ckan_package(f"{run}-beta", "beta", [(f"{run}-beta-r", url)], private=True)]
    site = FakeCKAN(packages, token=token, max_rows=7).start()
    env = worker_env(
        ctx.settings, broker, EXPORTER_ARCHIVER_ALLOW_NETWORKS="127.0.0.1/32", EXPORTER_ARCHIVER_HOST_DELAY_MS="0",
        EXPORTER_ARCHIVER_GONE_AFTER_SWEEPS="2", EXPORTER_ARCHIVER_GONE_AFTER_DAYS="0", EXPORTER_ARCHIVER_GONE_MAX_PERCENT="10",
    )
    worker = WorkerProcess(env, tmp_path / "worker.log", queues="archive", pool="prefork", concurrency=2)
    results = []
    try:
        name = f"lost-{run}"
        add_portal(ctx, name, site.url, api_token=token)
        for sweep in range(4):
            if sweep == 1:
                site.readable_orgs = {"pub", "alpha"}  # the token's user left organization beta
                site.packages = [p for p in site.packages if p["name"] != f"{run}-alpha"]  # a public dataset deleted
            job = jobs.submit(ctx, "sweep_portal", {"portal": name})
            wait_for(lambda job=job: jobs.get(ctx, job.id).status in ("succeeded", "failed"), 60, f"sweep {sweep} to finish", interval=0.3)
            done = jobs.get(ctx, job.id)
            assert done.status == "succeeded", done.error
            results.append((done.result["resources"], done.result["gone"], done.result["unreadable"]))
    finally:
        worker.stop()
        site.stop()
    assert results == [(20, 0, 0), (18, 0, 1), (18, 1, 1), (18, 0, 1)]
    with ctx.db.session() as s:
        rows = {r.external_id: r for r in s.scalars(select(Resource).where(Resource.external_id.like(f"{run}-%")))}
    assert rows[f"{run}-alpha-r"].gone_at is not None
    assert rows[f"{run}-beta-r"].gone_at is None and rows[f"{run}-beta-r"].missing_sweeps == 0 and rows[f"{run}-beta-r"].private
