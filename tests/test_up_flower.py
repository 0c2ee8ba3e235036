"""`exporter up` serves the app on gunicorn and starts Flower behind basic auth; the operator pages link to it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
import requests

from .conftest import free_port
from .workers import ROOT, wait_for

pytestmark = pytest.mark.slow


def answers(url: str, **kw) -> requests.Response | None:
    try:
        return requests.get(url, timeout=5, allow_redirects=False, **kw)
    except (requests.ConnectionError, requests.Timeout):
        return None


def test_up_serves_on_gunicorn_and_flower_asks_for_the_generated_password(tmp_path):
    port, flower_port = free_port(), free_port()
    web, flower = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{flower_port}"
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "FLOWER_"))}
    env.update({"EXPORTER_VAR_DIR": str(var), "EXPORTER_WEB_PORT": str(port), "EXPORTER_PUBLIC_URL": web, "EXPORTER_FLOWER_URL": flower, "PYTHONUNBUFFERED": "1"})
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "exporter.cli", "up", "-c", "1"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        health = wait_for(lambda: (r := answers(web + "/healthz")) is not None and r.status_code == 200 and r, 60, "the web app to answer /healthz")
        assert "gunicorn" in health.headers.get("Server", ""), health.headers
        refused = wait_for(lambda: (r := answers(flower + "/")) is not None and [r], 60, "Flower to answer")[0]
        assert refused.status_code == 401
        assert answers(flower + "/api/tasks", auth=("operator", "wrong-password")).status_code == 401
        auth = ("operator", (var / "flower_password").read_text().strip())
        assert answers(flower + "/", auth=auth).status_code == 200

        session = requests.Session()
        page = session.get(web + "/pages/login", timeout=5).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        password = (var / "operator_password").read_text().strip()
        assert session.post(web + "/pages/login", data={"secret": password, "csrf_token": token}, timeout=5, allow_redirects=False).status_code == 302
        dashboard = session.get(web + "/pages/", timeout=5).text
        assert re.search(r'<a href="([^"]+)"[^>]*id="flower-link"', dashboard).group(1) == flower

        def heard_a_worker() -> bool:
            workers = requests.get(flower + "/workers", params={"json": 1}, auth=auth, timeout=5).json()["data"]
            return any(w.get("worker-heartbeat") for w in workers)

        # Flower's task list fills from events sent after it subscribed: wait until it hears the worker.
        wait_for(heard_a_worker, 60, "Flower to receive the worker's heartbeat events", interval=0.5)
        submit = subprocess.run([sys.executable, "-m", "exporter.cli", "jobs", "submit", "synthetic", "--params", '{"size": 100, "steps": 1}'], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert submit.returncode == 0, submit.stderr
        job_id = json.loads(submit.stdout)["id"]

        def listed() -> dict | None:
            tasks = requests.get(flower + "/api/tasks", auth=auth, timeout=5).json()
            done = [t for t in tasks.values() if job_id in (t.get("args") or "") and t.get("state") == "SUCCESS"]
            return done[0] if done else None

        task = wait_for(listed, 90, "Flower to list the job's task as SUCCESS", interval=0.5)
        assert task["name"].startswith("exporter.")
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(40)
            except subprocess.TimeoutExpired:
                up.kill()
        log.close()
