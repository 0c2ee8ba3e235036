"""`exporter up`: web (gunicorn), worker, beat and Flower in one process tree on embedded defaults (no servers)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from .conftest import free_port
from .workers import ROOT, wait_for


def children_of(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_up_serves_runs_jobs_and_stops_cleanly_on_ctrl_c(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTER_")}
    env.update({"EXPORTER_VAR_DIR": str(tmp_path / "var"), "EXPORTER_WEB_PORT": str(port), "EXPORTER_PUBLIC_URL": f"http://127.0.0.1:{port}", "EXPORTER_FLOWER_URL": f"http://127.0.0.1:{free_port()}", "PYTHONUNBUFFERED": "1"})
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "cli", "up", "-c", "1"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def healthy():
            try:
                r = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            except (requests.ConnectionError, requests.Timeout):  # gunicorn listens before its workers have loaded the app
                return None
            return r.json() if r.status_code == 200 else None

        health = wait_for(healthy, 60, "the web app to answer /healthz")
        assert health["checks"]["database"]["detail"].startswith("sqlite")
        assert "filesystem" in health["checks"]["broker"]["detail"]

        submit = subprocess.run([sys.executable, "-m", "cli", "jobs", "submit", "synthetic", "--params", '{"size": 1000, "steps": 2}'], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert submit.returncode == 0, submit.stderr
        job_id = json.loads(submit.stdout)["id"]

        def finished():
            out = subprocess.run([sys.executable, "-m", "cli", "jobs", "show", job_id], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
            job = json.loads(out.stdout)
            return job if job["status"] in ("succeeded", "failed") else None

        job = wait_for(finished, 90, "the job to finish through the filesystem broker", interval=0.5)
        assert job["status"] == "succeeded" and job["artifacts"][0]["size"] == 1000
        # Processed messages are kept (the embedded broker's audit trail).
        assert list((tmp_path / "var" / "broker" / "processed").iterdir())
        assert not (ROOT / "control").exists(), "the filesystem broker wrote outside VAR_DIR"

        kids = children_of(up.pid)
        assert len(kids) == 4
        up.send_signal(signal.SIGINT)
        assert up.wait(40) == 0, (tmp_path / "up.log").read_text()[-4000:]  # what stopped it, if it was not the SIGINT
        wait_for(lambda: not any(alive(k) for k in kids), 20, "web, worker, beat and Flower to exit")
    finally:
        if up.poll() is None:
            up.kill()
        log.close()
    assert "exporter up: stopped" in (tmp_path / "up.log").read_text()
