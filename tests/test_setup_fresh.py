"""`make run` sets up the runtime dependencies only, and they are enough for what it runs."""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

import pytest
import requests

from .conftest import free_port
from .workers import ROOT, wait_for

TEST_ONLY = ("pytest", "playwright", "moto", "schemathesis", "hypothesis")


def make_dry_run(target: str, venv_dir: Path) -> str:
    return subprocess.run(["make", "-n", target, f"VENV={venv_dir}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_make_run_installs_runtime_only_and_make_test_then_only_the_extras(tmp_path):
    fresh = tmp_path / "venv"
    run_steps = make_dry_run("run", fresh)
    installs = [line for line in run_steps.splitlines() if "pip install" in line and "--upgrade pip" not in line]
    assert len(installs) == 1 and installs[0].endswith("-e .")
    assert "[test]" not in run_steps
    fresh.mkdir()
    (fresh / ".installed-run").touch()
    test_steps = [line for line in make_dry_run("test", fresh).splitlines() if "pip install" in line]
    # The extras, plus GDAL's pure-Python validate_gpkg.py (gdal-utils) without the GDAL bindings it declares.
    extras = [line for line in test_steps if line.endswith("-e '.[test]'")]
    no_deps = [line for line in test_steps if "--no-deps 'gdal-utils" in line]
    assert len(extras) == 1 and len(no_deps) == 1 and len(test_steps) == 2


@pytest.mark.slow
def test_the_runtime_dependencies_run_db_upgrade_demo_and_up(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)], check=True, timeout=600, capture_output=True)
    for module in TEST_ONLY:
        probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, text=True)
        assert probe.returncode != 0, f"{module} is importable with the runtime dependencies only"

    folder = tmp_path / "clone"
    folder.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "PYTHON"))}
    env.update({"EXPORTER_WEB_PORT": str(port), "EXPORTER_PUBLIC_URL": f"http://127.0.0.1:{port}", "EXPORTER_FLOWER_URL": f"http://127.0.0.1:{free_port()}"})
    exporter = str(env_dir / "bin" / "exporter")
    for step in (["db", "upgrade"], ["demo", "--per-agency", "5"]):
        done = subprocess.run([exporter, *step], cwd=folder, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([exporter, "up", "-c", "1"], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def healthy() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
            except (requests.ConnectionError, requests.Timeout):
                assert up.poll() is None, (tmp_path / "up.log").read_text()
                return False

        wait_for(healthy, 90, "exporter up (runtime dependencies only) to answer /healthz", interval=0.5)
        # The API's document is generated from its schemas at start: runtime dependencies too.
        assert requests.get(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=10).json()["paths"]["/exports"]
    finally:
        up.terminate()
        try:
            up.wait(40)
        except subprocess.TimeoutExpired:
            up.kill()
        log.close()
    assert (folder / "var" / "exporter.db").exists()
