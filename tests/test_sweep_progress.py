"""A sweep's progress, resources done out of resources due, is live on the job page while its
parts still run (a real prefork worker on Redis, PostgreSQL, the operator pages over HTTP)."""

from __future__ import annotations

import uuid

from exporter import jobs
from exporter.archiver.portals import add_portal
from tests.archiver_fixtures import ARCHIVER_TEST_SETTINGS
from tests.http_servers import FakeCKAN, ScenarioServer, ckan_package
from tests.test_pages import PASSWORD, login
from web import create_app

from .workers import WorkerProcess, redis_broker, sender, wait_for, worker_env

REDIS_DB = 3
FAST = 6  # resources answered at once; one more is held until the test has read the progress


def test_the_job_page_shows_a_sweep_s_progress_while_a_part_is_still_running(pg_ctx, tmp_path):
    ctx = pg_ctx
    ctx.settings = ctx.settings.replace(**ARCHIVER_TEST_SETTINGS, operator_password=PASSWORD)
    server = ScenarioServer().start()
    run = uuid.uuid4().hex[:6]
    packages = [ckan_package(f"prog{run}-{i}", "org", [(f"prog{run}-{i}-r", f"{server.url}/data.csv?body=row,{i}")]) for i in range(FAST)]
    packages.append(ckan_package(f"prog{run}-held", "org", [(f"prog{run}-held-r", f"{server.url}/held?timeout=90")]))
    site = FakeCKAN(packages, max_rows=5).start()
    broker = redis_broker(REDIS_DB)
    ctx.enqueue = sender(broker)
    env = worker_env(
        ctx.settings, broker, EXPORTER_ARCHIVER_ALLOW_NETWORKS="127.0.0.1/32", EXPORTER_ARCHIVER_HOST_DELAY_MS="0",
        EXPORTER_ARCHIVER_HOST_CONCURRENCY="4", EXPORTER_ARCHIVER_BATCH_SIZE="2",  # four parts: 2, 2, 2, 1
    )
    worker = WorkerProcess(env, tmp_path / "worker.log", queues="archive", pool="prefork", concurrency=2)
    client = create_app(ctx).test_client()
    assert login(client).status_code == 302
    try:
        add_portal(ctx, f"prog-{run}", site.url)
        sweep = jobs.submit(ctx, "sweep_portal", {"portal": f"prog-{run}"})
        assert server.held.wait(60), "the held resource was never requested"
        # one worker process waits on the held resource; the other finishes every other part
        wait_for(lambda: jobs.get(ctx, sweep.id).progress_done >= FAST + 1 - 2, 60, "the other parts to finish", interval=0.2)
        [live] = client.get(f"/pages/jobs.json?ids={sweep.id}").get_json()["jobs"]
        page = client.get(f"/pages/jobs/{sweep.id}").get_data(as_text=True)
        assert live["status"] == "running" and not live["final"]
        assert live["total"] == FAST + 1 and 0 < live["done"] < live["total"], live
        assert f"({live['done']} of {FAST + 1})" in page
        server.release.set()
        wait_for(lambda: jobs.get(ctx, sweep.id).status not in ("pending", "running"), 60, "the sweep to finish", interval=0.2)
    finally:
        server.release.set()
        worker.stop()
        site.stop()
        server.stop()
    job = jobs.get(ctx, sweep.id)
    assert job.status == "succeeded", job.error
    assert (job.progress_done, job.progress_total) == (FAST + 1, FAST + 1)
    assert (job.result["due"], job.result["checked"]) == (FAST + 1, FAST + 1)
    [done] = client.get(f"/pages/jobs.json?ids={sweep.id}").get_json()["jobs"]
    assert (done["done"], done["total"], done["percentage"], done["final"]) == (FAST + 1, FAST + 1, 100, True)
