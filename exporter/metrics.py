"""Prometheus metrics, read from the database (the source of truth) and the broker at scrape time.

- exporter_jobs{kind,status}: jobs in the table by kind and status;
- exporter_job_duration_seconds{kind,status}: histogram of finished jobs' run time
  (started to finished, over the jobs the table holds);
- exporter_queue_depth{queue}: messages waiting on each Celery queue (Redis: LLEN of the queue
  and its priority lists; filesystem broker: message files);
- exporter_storage_{free,total,used,reserved}_bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import Float, case, cast, func, select

from .admission import storage_usage
from .kinds import QUEUES, load_all
from .models import Job

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600)
REDIS_PRIORITY_SEP = "\x06\x16"
REDIS_PRIORITY_STEPS = (3, 6, 9)  # kombu's steps besides 0, which is the plain queue name


def queues() -> list[str]:
    return sorted({k.queue for k in load_all().values()} | set(QUEUES))


def _duration(dialect: str):
    if dialect == "postgresql":
        return func.extract("epoch", Job.finished_at - Job.started_at)
    return (func.julianday(Job.finished_at) - func.julianday(Job.started_at)) * 86400.0


def job_counts(ctx) -> list[tuple[str, str, int]]:
    with ctx.db.session() as s:
        rows = s.execute(select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status))
        return [(k, st, int(n)) for k, st, n in rows]


def job_durations(ctx) -> list[tuple[str, str, list[int], int, float]]:
    """Per (kind, status) of finished jobs: cumulative bucket counts, count, sum of seconds."""
    dur = cast(_duration(ctx.db.backend), Float)
    cols = [func.sum(case((dur <= b, 1), else_=0)) for b in DURATION_BUCKETS]
    query = (
        select(Job.kind, Job.status, func.count(), func.coalesce(func.sum(dur), 0.0), *cols)
        .where(Job.started_at.is_not(None), Job.finished_at.is_not(None), Job.status.in_(("succeeded", "failed", "expired")))
        .group_by(Job.kind, Job.status)
    )
    with ctx.db.session() as s:
        return [(r[0], r[1], [int(c or 0) for c in r[4:]], int(r[2]), float(r[3] or 0.0)) for r in s.execute(query)]


def queue_depths(ctx) -> dict[str, int] | None:
    """Messages waiting per queue, or None when the broker cannot say (memory, AMQP)."""
    settings = ctx.settings
    if settings.is_embedded_broker:
        folder = Path(settings.broker_folder) / "queue"
        counts = dict.fromkeys(queues(), 0)
        if folder.is_dir():
            for path in folder.iterdir():
                name = path.name
                if name.endswith(".msg"):
                    queue = name[: -len(".msg")].rsplit(".", 1)[-1]
                    if queue in counts:
                        counts[queue] += 1
        return counts
    if settings.broker_url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(settings.broker_url, socket_timeout=3, socket_connect_timeout=3)
        try:
            pipe = client.pipeline(transaction=False)
            names = queues()
            for q in names:
                pipe.llen(q)
                for step in REDIS_PRIORITY_STEPS:
                    pipe.llen(f"{q}{REDIS_PRIORITY_SEP}{step}")
            values = pipe.execute()
        finally:
            client.close()
        per = 1 + len(REDIS_PRIORITY_STEPS)
        return {q: sum(values[i * per : (i + 1) * per]) for i, q in enumerate(names)}
    return None


class _Collector:
    def __init__(self, ctx):
        self.ctx = ctx

    def collect(self) -> Iterator:
        jobs = GaugeMetricFamily("exporter_jobs", "Jobs in the table by kind and status.", labels=["kind", "status"])
        for kind, status, n in job_counts(self.ctx):
            jobs.add_metric([kind, status], n)
        yield jobs

        hist = HistogramMetricFamily("exporter_job_duration_seconds", "Run time of finished jobs, started to finished.", labels=["kind", "status"])
        for kind, status, cumulative, count, total in job_durations(self.ctx):
            buckets = [(str(float(b)), c) for b, c in zip(DURATION_BUCKETS, cumulative, strict=True)] + [("+Inf", count)]
            hist.add_metric([kind, status], buckets, total)
        yield hist

        up = GaugeMetricFamily("exporter_broker_up", "1 when the broker answered the queue-depth query.")
        depth = GaugeMetricFamily("exporter_queue_depth", "Messages waiting on each Celery queue.", labels=["queue"])
        try:
            depths = queue_depths(self.ctx)
            up.add_metric([], 1 if depths is not None else 0)
            for queue, n in sorted((depths or {}).items()):
                depth.add_metric([queue], n)
        except Exception as exc:
            log.warning("metrics: cannot read queue depths: %s", exc)
            up.add_metric([], 0)
        yield up
        yield depth

        usage = storage_usage(self.ctx)
        for name, value, help_ in (
            ("free", usage.free, "Free bytes of the storage (quota applied)."),
            ("total", usage.total, "Total bytes of the storage (quota applied)."),
            ("used", usage.used, "Bytes of live artifacts."),
            ("reserved", usage.reserved, "Bytes pending and running jobs are still expected to write."),
        ):
            if value is not None:
                yield GaugeMetricFamily(f"exporter_storage_{name}_bytes", help_, value=value)


def render(ctx) -> bytes:
    """The metrics in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(ctx))
    return generate_latest(registry)
