# ruff: noqa: F811 - fixtures come from tests.archiver_fixtures
"""`exporter up` with one worker process, two portals swept and two URL lists archived at once: all four finish.

This is the path the review reproduced the deadlock on (a sweep waiting inside a worker for
its own archive tasks): the embedded filesystem broker and a prefork worker of `up`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import pytest

from tests.archiver_fixtures import nginx  # noqa: F401
from tests.http_servers import FakeCKAN, ckan_package

from .conftest import free_port
from .workers import ROOT, wait_for

pytestmark = pytest.mark.slow
DATASETS = 6


def _cli(env, *args) -> dict:
    out = subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip().startswith("{") else {}


def test_two_sweeps_and_two_url_lists_at_once_finish_on_one_worker_process_of_exporter_up(tmp_path, nginx):
    run = uuid.uuid4().hex[:6]
    sites = []
    for tag in ("north", "south"):
        packages = []
        for i in range(DATASETS):
            name = f"{tag}{run}-{i}"
            (nginx.root / f"{name}.csv").write_bytes(f"{tag},{i}\n".encode())
            packages.append(ckan_package(name, tag, [(f"{name}-r", f"{nginx.url}/{name}.csv")]))
        sites.append(FakeCKAN(packages, max_rows=4).start())
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "FLOWER_"))}
    env.update({
        "EXPORTER_VAR_DIR": str(tmp_path / "var"), "EXPORTER_WEB_PORT": str(port), "EXPORTER_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "EXPORTER_FLOWER_URL": f"http://127.0.0.1:{free_port()}", "PYTHONUNBUFFERED": "1",
        "EXPORTER_ARCHIVER_ALLOW_NETWORKS": "127.0.0.1/32", "EXPORTER_ARCHIVER_HOST_DELAY_MS": "0", "EXPORTER_ARCHIVER_BATCH_SIZE": "2",
    })
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "cli", "up", "-c", "1"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (tmp_path / "var" / "exporter.db").exists() and b"ready" in (tmp_path / "up.log").read_bytes(), 60, "exporter up's worker to be ready", interval=0.5)
        for tag, site in zip(("north", "south"), sites, strict=True):
            _cli(env, "portals", "add", f"{tag}-{run}", site.url)
        sweeps = [_cli(env, "portals", "sweep", f"{tag}-{run}")["id"] for tag in ("north", "south")]
        lists = [_cli(env, "jobs", "submit", "archive_urls", "--params", json.dumps({"urls": [f"{nginx.url}/{tag}{run}-{i}.csv" for i in range(DATASETS)]}))["id"] for tag in ("north", "south")]

        def ended() -> list[dict] | None:
            shown = [_cli(env, "jobs", "show", job_id) for job_id in sweeps + lists]
            return shown if all(j["status"] not in ("pending", "running") for j in shown) else None

        done = wait_for(ended, 120, "both sweeps and both URL lists to end on one worker process", interval=1)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(40)
            except subprocess.TimeoutExpired:
                up.kill()
        log.close()
        for site in sites:
            site.stop()
    for job in done:
        assert job["status"] == "succeeded", job.get("error")
        assert job["result"]["checked"] == DATASETS
    for job in done[:2]:
        assert job["result"]["statuses"] == {"Archived successfully": DATASETS}
    for job in done[2:]:
        assert [r["status"] for r in job["result"]["results"]] == ["Archived successfully"] * DATASETS
