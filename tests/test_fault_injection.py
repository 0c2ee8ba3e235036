# ruff: noqa: F811 - fixtures come from tests.archiver_fixtures
"""Fault injection through the path users run: prefork workers SIGKILLed again and again, and
the broker restarted once (losing every queued message), while jobs of every kind run.

Bounded: four kills, one broker restart, everything on 127.0.0.1, a few minutes at most.
It ends with every job succeeded exactly once, one set of artifacts each whose sha256 is the
stored object's, and no object in storage that no row names.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import redis
from celery import Celery
from sqlalchemy import select

from exporter import cleanup, jobs
from exporter.archiver.models import ArchiveVersion
from exporter.archiver.portals import add_portal
from exporter.dumps.models import DumpObject
from exporter.kinds import load_all
from exporter.models import Artifact, Job
from exporter.runner import STAGING
from tests.archiver_fixtures import ARCHIVER_TEST_SETTINGS, nginx  # noqa: F401
from tests.conftest import free_port
from tests.http_servers import FakeCKAN, ckan_package
from tests.raids_helpers import AGENCY, SP, record, save
from tests.workers import LoggedProcess, WorkerProcess, sender, wait_for, worker_env

KILLS = 4


class RedisServer:
    """A redis-server of this test's own on a free port, which the test may kill and restart."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: self._ping(), 10, "redis-server to answer")
        return self

    def _ping(self) -> bool:
        try:
            return redis.Redis.from_url(self.url, socket_timeout=0.5).ping()
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        """Die without saving (every queued and unacked message is lost), then come back."""
        self.kill()
        self.start()


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


def seed(ctx, nginx) -> FakeCKAN:
    save(ctx, *[record(i, access="open" if i % 4 else "closed") for i in range(1, 41)])
    packages = []
    for i in range(12):
        name = f"fi-{i:02d}"
        (nginx.root / f"{name}.csv").write_bytes(f"fault,{i}\n".encode() * 50)
        packages.append(ckan_package(name, "water", [(f"fi-res-{i:02d}", f"{nginx.url}/{name}.csv")]))
    site = FakeCKAN(packages).start()
    add_portal(ctx, "faulty", site.url)
    return site


def submit_all(ctx, nginx) -> dict[str, str]:
    """One job of every registered kind (and a few long synthetic ones); returns id -> kind."""
    urls = [f"{nginx.url}/fi-{i:02d}.csv" for i in range(12)]
    requests = {
        "synthetic": [{"size": 64, "steps": 16, "delay": 0.25} for _ in range(3)],
        "export_public": [{"agency": AGENCY, "mode": "full", "format": "zip"}],
        "export_private": [{"service_point": SP, "mode": "full", "format": "tar.gz"}],
        "archive_urls": [{"urls": urls[:6]}],
        "sweep_portal": [{"portal": "faulty"}],
        "publish_dump": [{"agency": AGENCY}],
    }
    product_kinds = {name for name, kind in load_all().items() if kind.run.__module__.startswith("exporter.")}
    assert set(requests) == product_kinds, "every job kind the product registers is exercised here"
    out = {}
    for kind, params_list in requests.items():
        for params in params_list:
            out[jobs.submit(ctx, kind, params, requested_by="fault-injection").id] = kind
    return out


def stored_keys(ctx) -> set[str]:
    return {o.key for o in ctx.storage.list("")}


def named_keys(ctx) -> set[str]:
    with ctx.db.session() as s:
        arts = set(s.scalars(select(Artifact.key).where(Artifact.deleted_at.is_(None))))
        versions = set(s.scalars(select(ArchiveVersion.key).where(ArchiveVersion.deleted_at.is_(None))))
        dumps = set(s.scalars(select(DumpObject.key)))
    latest = {k for k in stored_keys(ctx) if k.startswith("dumps/") and k.endswith("/LATEST.json")}
    return arts | versions | dumps | latest


@pytest.mark.slow
def test_kills_and_a_broker_restart_lose_nothing_and_leave_nothing(pg_ctx, own_redis, nginx, tmp_path):
    ctx = pg_ctx
    ctx.settings = ctx.settings.replace(**ARCHIVER_TEST_SETTINGS)
    site = seed(ctx, nginx)
    ctx.enqueue = sender(own_redis.url)
    env = worker_env(
        ctx.settings, own_redis.url,
        EXPORTER_HEARTBEAT_SECONDS="0.3", EXPORTER_MAX_ATTEMPTS=str(KILLS + 2), EXPORTER_STALE_AFTER_SECONDS="2", EXPORTER_PENDING_TIMEOUT_SECONDS="2",
        EXPORTER_ARCHIVER_ALLOW_NETWORKS="127.0.0.1/32", EXPORTER_ARCHIVER_HOST_DELAY_MS="0",
        EXPORTER_ARCHIVER_RETRY_BACKOFF_MS="5", EXPORTER_ARCHIVER_RETRY_AFTER_MAX="0.2",
    )
    logs: list[LoggedProcess] = []
    beat = Reaper(own_redis.url)
    rng = random.Random(8)
    worker = None
    try:
        submitted = submit_all(ctx, nginx)
        beat.start()
        for n in range(KILLS):
            worker = WorkerProcess(env, tmp_path / f"worker-{n}.log", pool="prefork", concurrency=2)
            logs.append(worker)
            time.sleep(rng.uniform(1.5, 3.0))
            worker.kill()
            worker.stop()
            if n == 1:
                own_redis.restart()
        worker = WorkerProcess(env, tmp_path / "worker-last.log", pool="prefork", concurrency=2)
        logs.append(worker)

        def all_ended() -> bool:
            with ctx.db.session() as s:
                return all(st not in ("pending", "running") for st in s.scalars(select(Job.status).where(Job.id.in_(list(submitted)))))

        wait_for(all_ended, 240, "every job to end", interval=0.5)
    finally:
        beat.stopped.set()
        if worker is not None:
            worker.stop()
        site.stop()

    text = "".join(p.text() for p in logs)
    for job_id, kind in submitted.items():
        job = jobs.get(ctx, job_id)
        assert job.status == "succeeded", (kind, job.status, job.error)
        assert text.count(f"job {job_id}: succeeded") == 1, f"{kind} job {job_id} finished more than once"
        names = [a.name for a in job.artifacts]
        assert len(names) == len(set(names)), f"{kind} job {job_id} has two sets of artifacts: {names}"
        for art in job.artifacts:
            assert hashlib.sha256(ctx.storage.read_bytes(art.key)).hexdigest() == art.sha256, (kind, art.key)

    cleanup.run(ctx, temporary_age_seconds=0, orphan_grace_seconds=0)
    stray = stored_keys(ctx) - named_keys(ctx)
    assert stray == set(), f"objects no row names: {sorted(stray)[:10]}"
    assert list(ctx.storage.list(STAGING + "/")) == []
