"""Flower against a real worker on the Redis broker: its HTTP API shows the tasks jobs ran.

One public export (with a callback URL, so a webhook delivery runs too) and one archive
of a URL served on 127.0.0.1 run on a worker subprocess; Flower, another subprocess,
watches the task events and lists every task through /api/tasks.
"""

from __future__ import annotations

import ipaddress
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from exporter import jobs, submissions
from exporter.kinds import QUEUES
from exporter.raids.generator import generate

from .conftest import free_port
from .webhook_receiver import start_receiver
from .workers import LoggedProcess as Process
from .workers import redis_broker, sender, wait_for, worker_env

REDIS_DB = 11
CSV = b"id,name\n1,alpha\n2,beta\n"


def celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers.app:celery_app", *args]


@pytest.fixture
def csv_server():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(CSV)))
            self.end_headers()
            self.wfile.write(CSV)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/data/people.csv"
    server.shutdown()
    server.server_close()


def flower_tasks(base: str) -> dict[str, dict]:
    r = requests.get(base + "/api/tasks", timeout=5)
    r.raise_for_status()
    return r.json()


def test_flower_shows_the_tasks_an_export_and_an_archive_ran(pg_ctx, tmp_path, csv_server):
    ctx = pg_ctx
    broker = redis_broker(REDIS_DB)
    loopback = "127.0.0.1/32"
    ctx.settings = ctx.settings.replace(webhook_allow_networks=(ipaddress.ip_network(loopback),), archiver_allow_networks=(ipaddress.ip_network(loopback),))
    ctx.enqueue = sender(broker)
    generate(ctx, 10, agency="https://ror.org/038sjwq14", service_points=[20000000], seed=9)
    receiver, hook_server = start_receiver()
    env = worker_env(ctx.settings, broker, EXPORTER_WEBHOOK_ALLOW_NETWORKS=loopback, EXPORTER_ARCHIVER_ALLOW_NETWORKS=loopback, FLOWER_UNAUTHENTICATED_API="true")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs: list[Process] = []
    try:
        flower = Process(celery("flower", f"--port={port}", "--address=127.0.0.1"), env, tmp_path / "flower.log")
        procs.append(flower)

        def flower_up() -> bool:
            flower.alive()
            try:
                return requests.get(base + "/healthcheck", timeout=2).text == "OK"
            except requests.ConnectionError:
                return False

        wait_for(flower_up, 60, "Flower to answer /healthcheck")
        worker = Process(
            celery("worker", "-l", "INFO", "-P", "threads", "-c", "4", "-Q", ",".join(QUEUES), "-E", "-n", f"flower-test-{time.monotonic_ns()}@%h"),
            env,
            tmp_path / "worker.log",
        )
        procs.append(worker)
        wait_for(lambda: worker.alive() and "ready." in worker.text(), 60, "the worker to be ready")

        export = submissions.request_job(ctx, "export_public", {"agency": "https://ror.org/038sjwq14"}, requested_by="flower-test", callback_urls=[receiver.url]).job
        archive = submissions.request_job(ctx, "archive_urls", {"urls": [csv_server]}, requested_by="flower-test").job
        wait_for(lambda: all(jobs.get(ctx, j.id).status not in ("pending", "running") for j in (export, archive)), 90, "both jobs to end")
        assert jobs.get(ctx, export.id).status == "succeeded", jobs.get(ctx, export.id).error
        assert jobs.get(ctx, archive.id).status == "succeeded", jobs.get(ctx, archive.id).error
        receiver.wait_for(1, 30)

        def seen() -> dict[str, dict] | None:
            tasks = flower_tasks(base)
            by_name: dict[str, list[dict]] = {}
            for t in tasks.values():
                by_name.setdefault(t.get("name"), []).append(t)
            wanted = {
                "exporter.export_public": export.id,
                "exporter.archive_urls": archive.id,
                "exporter.run_part": None,  # archive_urls fans out its URLs in parts
                "exporter.deliver_webhook": None,
            }
            for name, job_id in wanted.items():
                done = [t for t in by_name.get(name, []) if t.get("state") == "SUCCESS" and (job_id is None or job_id in (t.get("args") or ""))]
                if not done:
                    return None
            return by_name

        by_name = wait_for(seen, 30, "Flower to list the export, archive and webhook tasks as SUCCESS")
        [export_task] = by_name["exporter.export_public"]
        assert export_task["worker"].startswith("flower-test-") and "succeeded" in (export_task.get("result") or "")
        [archive_task] = by_name["exporter.archive_urls"]
        assert archive.id in archive_task["args"] and "fanned_out" in (archive_task.get("result") or "")
        info = requests.get(f"{base}/api/task/info/{export_task['uuid']}", timeout=5).json()
        assert (info["name"], info["state"]) == ("exporter.export_public", "SUCCESS") and export.id in info["args"]
    finally:
        for p in reversed(procs):
            p.stop()
        hook_server.shutdown()
        hook_server.server_close()
