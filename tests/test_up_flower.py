"""`exporter up` serves the app on gunicorn and starts Flower behind basic auth; an operator follows\nthe link from the pages to Flower in Chromium and finds an export's task there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from .conftest import free_port
from .test_browser import ARGS, CHROMIUM, WAIT_MS
from .workers import ROOT, wait_for

pytestmark = pytest.mark.slow


def answers(url: str, **kw) -> requests.Response | None:
    try:
        return requests.get(url, timeout=5, allow_redirects=False, **kw)
    except (requests.ConnectionError, requests.Timeout):
        return None


def cli(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def heard_a_worker(flower: str, auth) -> bool:
    workers = requests.get(flower + "/workers", params={"json": 1}, auth=auth, timeout=5).json()["data"]
    return any(w.get("worker-heartbeat") for w in workers)


def test_up_serves_on_gunicorn_and_flower_asks_for_the_generated_password(tmp_path):
    port, flower_port = free_port(), free_port()
    web, flower = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{flower_port}"
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPORTER_", "FLOWER_"))}
    env.update({"EXPORTER_VAR_DIR": str(var), "EXPORTER_WEB_PORT": str(port), "EXPORTER_PUBLIC_URL": web, "EXPORTER_FLOWER_URL": flower, "PYTHONUNBUFFERED": "1"})
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([sys.executable, "-m", "cli", "up", "-c", "1"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        health = wait_for(lambda: (r := answers(web + "/healthz")) is not None and r.status_code == 200 and r, 60, "the web app to answer /healthz")
        assert "gunicorn" in health.headers.get("Server", ""), health.headers
        refused = wait_for(lambda: (r := answers(flower + "/")) is not None and [r], 60, "Flower to answer")[0]
        assert refused.status_code == 401
        assert answers(flower + "/api/tasks", auth=("operator", "wrong-password")).status_code == 401
        auth = ("operator", (var / "flower_password").read_text().strip())
        assert answers(flower + "/", auth=auth).status_code == 200

        # Flower's task list fills from events sent after it subscribed: wait until it hears the worker.
        wait_for(lambda: heard_a_worker(flower, auth), 60, "Flower to receive the worker's heartbeat events", interval=0.5)
        assert cli(env, "demo", "--per-agency", "20").returncode == 0
        export = cli(env, "export", "public", "--agency", "038sjwq14", "--enqueue")
        assert export.returncode == 0, export.stderr
        job_id = export.stdout.split()[0]

        def listed() -> dict | None:
            tasks = requests.get(flower + "/api/tasks", auth=auth, timeout=5).json()
            done = [t for t in tasks.values() if job_id in (t.get("args") or "") and t.get("state") == "SUCCESS"]
            return done[0] if done else None

        task = wait_for(listed, 90, "Flower to list the export's task as SUCCESS", interval=0.5)
        assert task["name"] == "exporter.export_public"

        # What an operator does: log in to the pages, follow the Flower link, find the export's task.
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                context = browser.new_context(http_credentials={"username": auth[0], "password": auth[1]})
                page = context.new_page()
                page.set_default_timeout(WAIT_MS)
                page.goto(web + "/pages/login")
                page.fill("input[name=secret]", (var / "operator_password").read_text().strip())
                page.click("button[type=submit]")
                expect(page.locator("h1")).to_have_text("Jobs")
                assert page.locator("#flower-link").get_attribute("href") == flower
                with context.expect_page() as opened:
                    page.click("#flower-link")
                monitor = opened.value
                monitor.set_default_timeout(WAIT_MS)
                monitor.wait_for_load_state()
                expect(monitor.locator("body")).to_contain_text("celery@")  # Flower's workers page
                monitor.goto(flower + "/tasks")
                expect(monitor.locator("#tasks-table")).to_contain_text("exporter.export_public")
                monitor.click(f"#tasks-table a[href='/task/{task['uuid']}']")
                expect(monitor.locator("body")).to_contain_text(job_id)  # the task's page shows its args: the job id
            finally:
                browser.close()
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(40)
            except subprocess.TimeoutExpired:
                up.kill()
        log.close()
        print((tmp_path / "up.log").read_text(errors="replace")[-6000:])  # shown by pytest when the test fails
