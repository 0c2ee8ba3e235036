# ruff: noqa: F811 - fixtures come from tests.archiver_fixtures
"""Fault injection through the path users run: prefork workers SIGKILLed again and again, and
the broker restarted once (losing every queued message), while jobs of every kind run.

Bounded: four kills, one broker restart, everything on 127.0.0.1 (Zenodo too: tests/zenodo_fake.py),
a few minutes at most. It ends with every job succeeded exactly once, one set of artifacts each
whose sha256 is the stored object's, one Zenodo version with the export's files, and no object
in storage that no row names.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import threading
import time

import pytest
from celery import Celery
from sqlalchemy import select

from exporter import cleanup, jobs
from exporter.archiver.models import ArchiveVersion, WarcFile
from exporter.archiver.portals import add_portal
from exporter.collections import batches, projects, views
from exporter.collections.models import CollectionFile
from exporter.dumps.models import DumpObject
from exporter.kinds import load_all
from exporter.models import Artifact, Job
from exporter.runner import STAGING, run_job
from exporter.tiles import grid
from exporter.tiles.layers import add_layer
from tests.archiver_fixtures import ARCHIVER_TEST_SETTINGS, nginx  # noqa: F401
from tests.collections_helpers import LiveApp, make_small_png
from tests.http_servers import FakeCKAN, ckan_package
from tests.panoptes_fake import TOKEN as PANOPTES_TOKEN
from tests.panoptes_fake import FakePanoptes
from tests.raids_helpers import AGENCY, SP, record, run_export, save
from tests.tiles_fixtures import box_roi, roi_tiles, write_tiles
from tests.workers import LoggedProcess, RedisServer, WorkerProcess, sender, wait_for, worker_env
from tests.zenodo_fake import TOKEN, FakeZenodo

KILLS = 4
TILES_ROI = box_roi(34.5, 31.5, 35.5, 32.5, grid.resolution(11), grid.resolution(6))


@pytest.fixture
def own_redis(tmp_path):
    if not (shutil.which("redis-server") or os.path.exists("/usr/bin/redis-server")):
        pytest.fail("redis-server is not installed (see .ci/run)", pytrace=False)
    server = RedisServer(tmp_path).start()
    yield server
    server.kill()


class Reaper(threading.Thread):
    """Sends `exporter.reap` and `exporter.cleanup`-free beats as celery beat would, every second."""

    def __init__(self, broker_url: str):
        super().__init__(daemon=True)
        self.app = Celery("test-beat", broker=broker_url)
        self.app.conf.broker_connection_retry_on_startup = False
        self.app.conf.broker_transport_options = {"socket_timeout": 1, "socket_connect_timeout": 1}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            try:
                self.app.send_task("exporter.reap", queue="engine", retry=False)
            except Exception:
                pass  # the broker is down for a moment; beat would try again too


def seed(ctx, nginx) -> tuple[FakeCKAN, Job]:
    """The registry, a portal, and a public export for the publish job to send to Zenodo."""
    save(ctx, *[record(i, access="open" if i % 4 else "closed") for i in range(1, 41)])
    published = run_export(ctx, "export_public", {"agency": AGENCY})
    packages = []
    for i in range(12):
        name = f"fi-{i:02d}"
        (nginx.root / f"{name}.csv").write_bytes(f"fault,{i}\n".encode() * 50)
        packages.append(ckan_package(name, "water", [(f"fi-res-{i:02d}", f"{nginx.url}/{name}.csv")]))
    site = FakeCKAN(packages).start()
    add_portal(ctx, "faulty", site.url)
    write_tiles(nginx.root / "fi-tiles", roi_tiles(TILES_ROI))
    add_layer(ctx, "faulty", url_template=f"{nginx.url}/fi-tiles/{{z}}/{{x}}/{{y}}.png", max_zoom=12)
    return site, published


def seed_collections(ctx, roots) -> dict[str, str]:
    """Three collection batches, each with its next job made but not sent: one to collect, one approved
    to publish, one published to import into the fake Zooniverse. Returns kind -> job id."""
    made = {}
    for name, step in (("fi-a", "collect_batch"), ("fi-b", "publish_collection"), ("fi-c", "import_collection")):
        folder = roots / name
        folder.mkdir(parents=True)
        for i in range(6):
            make_small_png(folder / f"{name}-{i}.png", seed=i + 10 * len(made))
        projects.add_project(ctx, name, str(folder), f"{name}@example.org", zooniverse_project="1234" if name == "fi-c" else None)
        polled = batches.poll_project(ctx, name, enqueue=False)
        if step == "collect_batch":
            made[step] = polled.job_id
            continue
        run_job(ctx, polled.job_id)
        approved = batches.approve(ctx, polled.batch_id, by="fault-injection")
        if step == "publish_collection":
            made[step] = approved.publish_job_id
            continue
        run_job(ctx, approved.publish_job_id)
        made[step] = views.get_batch(ctx, polled.batch_id, files=False)["importJobId"]
    ctx.sent.clear()
    return made


def submit_all(ctx, nginx, published: Job, premade: dict[str, str]) -> dict[str, str]:
    """One job of every registered kind (and a few long synthetic ones); returns id -> kind."""
    urls = [f"{nginx.url}/fi-{i:02d}.csv" for i in range(12)]
    requests = {
        "synthetic": [{"size": 64, "steps": 16, "delay": 0.25} for _ in range(3)],
        "export_public": [{"agency": AGENCY, "mode": "full", "format": "zip"}],
        "export_private": [{"service_point": SP, "mode": "full", "format": "tar.gz"}],
        "archive_urls": [{"urls": urls[:6]}],
        "sweep_portal": [{"portal": "faulty"}],
        "tiles": [{"layer": "faulty", "roi": TILES_ROI}],
        "publish_zenodo": [{"agency": AGENCY, "export": published.id}],
        "publish_dump": [{"agency": AGENCY}],
    }
    product_kinds = {name for name, kind in load_all().items() if kind.run.__module__.startswith("exporter.")}
    assert set(requests) | set(premade) == product_kinds, "every job kind the product registers is exercised here"
    out = {}
    for kind, job_id in premade.items():  # jobs the collections family makes itself (a poll, an approval, a publication)
        jobs.dispatch(ctx, jobs.get(ctx, job_id))
        out[job_id] = kind
    for kind, params_list in requests.items():
        for params in params_list:
            out[jobs.submit(ctx, kind, params, requested_by="fault-injection").id] = kind
    return out


def fake_md5s(zenodo: FakeZenodo, record_id: str) -> dict[str, str]:
    return {k: f["checksum"].removeprefix("md5:") for k, f in zenodo.files_of(record_id).items()}


def stored_keys(ctx) -> set[str]:
    return {o.key for o in ctx.storage.list("")}


def named_keys(ctx) -> set[str]:
    with ctx.db.session() as s:
        arts = set(s.scalars(select(Artifact.key).where(Artifact.deleted_at.is_(None))))
        versions = set(s.scalars(select(ArchiveVersion.key).where(ArchiveVersion.deleted_at.is_(None))))
        warcs = {k for row in s.execute(select(WarcFile.key, WarcFile.index_key).where(WarcFile.deleted_at.is_(None))) for k in row}
        dumps = set(s.scalars(select(DumpObject.key)))
        quarantine = {k for row in s.execute(select(CollectionFile.quarantine_key, CollectionFile.converted_key)) for k in row if k}
    latest = {k for k in stored_keys(ctx) if k.startswith("dumps/") and k.endswith("/LATEST.json")}
    return arts | versions | warcs | dumps | latest | quarantine


@pytest.mark.slow
def test_kills_and_a_broker_restart_lose_nothing_and_leave_nothing(pg_ctx, own_redis, nginx, tmp_path):
    ctx = pg_ctx
    ctx.settings = ctx.settings.replace(**ARCHIVER_TEST_SETTINGS, export_settle_seconds=0)
    site, published = seed(ctx, nginx)
    zenodo = FakeZenodo().start()
    panoptes = FakePanoptes().start()
    app = LiveApp(ctx)
    roots = tmp_path / "sources"
    ctx.settings = ctx.settings.replace(
        collections_source_roots=str(roots), collections_settle_seconds=0, public_url=app.url, zooniverse_url=panoptes.api, zooniverse_token=PANOPTES_TOKEN,
        zooniverse_allow_networks=ctx.settings.archiver_allow_networks,
    )
    app.start()
    premade = seed_collections(ctx, roots)
    ctx.enqueue = sender(own_redis.url)
    env = worker_env(
        ctx.settings, own_redis.url,
        EXPORTER_HEARTBEAT_SECONDS="0.3", EXPORTER_MAX_ATTEMPTS=str(KILLS + 2), EXPORTER_STALE_AFTER_SECONDS="2", EXPORTER_PENDING_TIMEOUT_SECONDS="2",
        EXPORTER_ARCHIVER_ALLOW_NETWORKS="127.0.0.1/32", EXPORTER_ARCHIVER_HOST_DELAY_MS="0",
        EXPORTER_ARCHIVER_RETRY_BACKOFF_MS="5", EXPORTER_ARCHIVER_RETRY_AFTER_MAX="0.2",
        # A killed tiles run keeps its host slots until their lease (a few seconds plus the
        # worst case of one tile request) runs out: short timeouts, more slots than it takes.
        EXPORTER_ARCHIVER_CONNECT_TIMEOUT="1", EXPORTER_ARCHIVER_READ_TIMEOUT="2", EXPORTER_ARCHIVER_HOST_CONCURRENCY="8",
        EXPORTER_TILES_FETCH_THREADS="1", EXPORTER_TILES_COMMIT_EVERY="10",
        EXPORTER_ZENODO_URL=zenodo.api, EXPORTER_ZENODO_TOKEN=TOKEN, EXPORTER_ZENODO_ALLOW_NETWORKS="127.0.0.1/32", EXPORTER_ZENODO_RETRY_BACKOFF_MS="10",
        EXPORTER_COLLECTIONS_SOURCE_ROOTS=str(roots), EXPORTER_PUBLIC_URL=app.url, EXPORTER_ZOONIVERSE_URL=panoptes.api, EXPORTER_ZOONIVERSE_TOKEN=PANOPTES_TOKEN,
        EXPORTER_ZOONIVERSE_ALLOW_NETWORKS="127.0.0.1/32", EXPORTER_ZOONIVERSE_POLL_SECONDS="0.2",
    )
    logs: list[LoggedProcess] = []
    beat = Reaper(own_redis.url)
    rng = random.Random(8)
    worker = None
    try:
        submitted = submit_all(ctx, nginx, published, premade)
        beat.start()
        for n in range(KILLS):
            worker = WorkerProcess(env, tmp_path / f"worker-{n}.log", pool="prefork", concurrency=2)
            logs.append(worker)
            time.sleep(rng.uniform(1.5, 3.0))
            if n == 1:  # under the working worker's feet: every queued and unacked message is lost
                own_redis.restart()
                time.sleep(rng.uniform(1.5, 3.0))
            worker.kill()
            worker.stop()
        worker = WorkerProcess(env, tmp_path / "worker-last.log", pool="prefork", concurrency=2)
        logs.append(worker)

        def all_ended() -> bool:
            with ctx.db.session() as s:
                return all(st not in ("pending", "running") for st in s.scalars(select(Job.status).where(Job.id.in_(list(submitted)))))

        try:
            wait_for(all_ended, 240, "every job to end", interval=0.5)
        except AssertionError:
            stuck = [(kind, jobs.get(ctx, job_id).status, jobs.get(ctx, job_id).error) for job_id, kind in submitted.items() if jobs.get(ctx, job_id).status in ("pending", "running")]
            raise AssertionError(f"jobs still not ended after 240s: {stuck}") from None
    finally:
        beat.stopped.set()
        if worker is not None:
            worker.stop()
        site.stop()
        zenodo.stop()
        panoptes.stop()
        app.stop()

    text = "".join(p.text() for p in logs)
    for job_id, kind in submitted.items():
        job = jobs.get(ctx, job_id)
        assert job.status == "succeeded", (kind, job.status, job.error)
        # Succeeded (above) and never twice: a worker killed just after the commit may not have logged it.
        assert text.count(f"job {job_id}: succeeded") <= 1, f"{kind} job {job_id} finished more than once"
        names = [a.name for a in job.artifacts]
        assert len(names) == len(set(names)), f"{kind} job {job_id} has two sets of artifacts: {names}"
        for art in job.artifacts:
            assert hashlib.sha256(ctx.storage.read_bytes(art.key)).hexdigest() == art.sha256, (kind, art.key)

    [version] = zenodo.published()  # one version, whatever the kills interrupted
    assert zenodo.drafts() == [] and fake_md5s(zenodo, version["id"]) == {a.filename: a.md5 for a in published.artifacts if a.name in ("archive", "manifest", "sha256sums", "ro-crate")}

    states = {b["project"]: b["state"] for b in views.list_batches(ctx)}
    assert states == {"fi-a": "awaiting_approval", "fi-b": "published", "fi-c": "imported"}, states
    assert len(panoptes.posts("/api/subject_set_imports")) == 1 and len(panoptes.subjects) == 6  # one import, whatever the kills interrupted

    cleanup.run(ctx, temporary_age_seconds=0, orphan_grace_seconds=0)
    stray = stored_keys(ctx) - named_keys(ctx)
    assert stray == set(), f"objects no row names: {sorted(stray)[:10]}"
    missing = named_keys(ctx) - stored_keys(ctx)
    assert missing == set(), f"rows naming objects cleanup removed or no run wrote: {sorted(missing)[:10]}"
    assert list(ctx.storage.list(STAGING + "/")) == []
