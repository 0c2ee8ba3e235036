"""/metrics in Prometheus' format: jobs by kind and status, durations, queue depths, storage."""

from __future__ import annotations

import uuid

import redis
from prometheus_client.parser import text_string_to_metric_families

from exporter import jobs, metrics, runner
from exporter.kinds import QUEUES

from .conftest import REDIS_URL, require_service


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_jobs_and_time_finished_ones(ctx):
    from web import create_app

    done = jobs.submit(ctx, "synthetic", {"size": 100, "steps": 2})
    jobs.submit(ctx, "synthetic", {"size": 50})
    assert runner.run_job(ctx, done.id) == "succeeded"
    client = create_app(ctx).test_client()
    r = client.get("/metrics")
    assert r.status_code == 200 and r.content_type.startswith("text/plain")
    assert client.get("/api/v1/metrics").data.count(b"exporter_jobs{") == r.data.count(b"exporter_jobs{")
    got = _samples(r.data.decode())
    assert got[("exporter_jobs", (("kind", "synthetic"), ("status", "succeeded")))] == 1
    assert got[("exporter_jobs", (("kind", "synthetic"), ("status", "pending")))] == 1
    labels = (("kind", "synthetic"), ("status", "succeeded"))
    assert got[("exporter_job_duration_seconds_count", labels)] == 1
    assert got[("exporter_job_duration_seconds_bucket", (("kind", "synthetic"), ("le", "+Inf"), ("status", "succeeded")))] == 1
    assert got[("exporter_job_duration_seconds_bucket", (("kind", "synthetic"), ("le", "86400.0"), ("status", "succeeded")))] == 1
    assert 0 <= got[("exporter_job_duration_seconds_sum", labels)] < 86400
    assert got[("exporter_storage_used_bytes", ())] == 100
    assert got[("exporter_storage_free_bytes", ())] > 0


def test_queue_depths_on_the_filesystem_broker(make_settings, sqlite_database_url):
    from exporter.context import Context

    ctx = Context(make_settings(database_url=sqlite_database_url, broker_url="filesystem://"))
    folder = ctx.settings.broker_folder / "queue"
    folder.mkdir(parents=True)
    for queue, n in (("exports", 3), ("archive", 1)):
        for i in range(n):
            (folder / f"{1000 + i}_{uuid.uuid4()}.{queue}.msg").write_text("{}")
    (folder / "stray.txt").write_text("")
    assert metrics.queue_depths(ctx) == {**dict.fromkeys(QUEUES, 0), "archive": 1, "exports": 3}
    got = _samples(metrics.render(ctx).decode())
    assert got[("exporter_queue_depth", (("queue", "exports"),))] == 3
    assert got[("exporter_broker_up", ())] == 1
    ctx.close()


def test_queue_depths_on_redis_count_priority_lists(make_settings, sqlite_database_url):
    from exporter.context import Context

    require_service("Redis", "127.0.0.1", 6379)
    url = f"{REDIS_URL}/10"  # a database no other test module uses
    client = redis.Redis.from_url(url)
    names = ["exports", "exports\x06\x163", "archive", "engine", "webhooks"] + [f"{q}\x06\x16{p}" for q in ("archive", "engine", "webhooks") for p in (3, 6, 9)]
    client.delete(*names, "exports\x06\x166", "exports\x06\x169")
    client.rpush("exports", "a", "b")
    client.rpush("exports\x06\x163", "c")
    client.rpush("webhooks", "d")
    try:
        ctx = Context(make_settings(database_url=sqlite_database_url, broker_url=url))
        assert metrics.queue_depths(ctx) == {**dict.fromkeys(QUEUES, 0), "exports": 3, "webhooks": 1}
        ctx.close()
    finally:
        client.delete(*names)
        client.close()


def test_unreachable_redis_is_reported_not_raised(make_settings, sqlite_database_url):
    from exporter.context import Context

    from .conftest import free_port

    ctx = Context(make_settings(database_url=sqlite_database_url, broker_url=f"redis://127.0.0.1:{free_port()}/0"))
    got = _samples(metrics.render(ctx).decode())
    assert got[("exporter_broker_up", ())] == 0
    ctx.close()
