"""Cleanup expires a job only if its expiry is still the one it read, and deletes objects only after the commit."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, update

from exporter import cleanup, jobs, runner
from exporter.db import utcnow
from exporter.models import Artifact, Job


def finished_job(ctx) -> tuple[str, list[str]]:
    job = jobs.submit(ctx, "synthetic", {"size": 100, "steps": 1})
    assert runner.run_job(ctx, job.id) == "succeeded"
    return job.id, [a.key for a in jobs.get(ctx, job.id).artifacts]


def test_an_expiry_pushed_forward_after_the_select_keeps_the_job(ctx):
    job_id, keys = finished_job(ctx)
    later = utcnow() + timedelta(seconds=ctx.settings.job_expiry_seconds + 1)
    [(due_id, read_expiry)] = cleanup.expiry_due(ctx, later)
    assert due_id == job_id
    # Between cleanup's select and its update, something gives the result a longer life.
    with ctx.db.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(expires_at=later + timedelta(days=1)))
    assert cleanup.expire(ctx, job_id, read_expiry, later) is None
    kept = jobs.get(ctx, job_id)
    assert kept.status == "succeeded" and all(a.deleted_at is None for a in kept.artifacts)
    assert all(ctx.storage.stat(k) is not None for k in keys)
    assert cleanup.run(ctx, now=later)["expired_jobs"] == 0
    report = cleanup.run(ctx, now=later + timedelta(days=2))
    assert (report["expired_jobs"], report["deleted_objects"]) == (1, len(keys))
    assert jobs.get(ctx, job_id).status == "expired"
    assert all(ctx.storage.stat(k) is None for k in keys)


def test_a_failing_commit_leaves_the_objects_in_place(ctx):
    job_id, keys = finished_job(ctx)
    later = utcnow() + timedelta(seconds=ctx.settings.job_expiry_seconds + 1)

    def refuse(session, flush_context, instances):
        if any(isinstance(o, Artifact) and o.deleted_at is not None for o in session.dirty):
            raise RuntimeError("database went away at commit")

    event.listen(ctx.db.sessionmaker, "before_flush", refuse)
    try:
        assert cleanup.run(ctx, now=later)["deleted_objects"] == 0  # rolled back and logged; cleanup goes on
    finally:
        event.remove(ctx.db.sessionmaker, "before_flush", refuse)
    job = jobs.get(ctx, job_id)
    assert job.status == "succeeded" and all(a.deleted_at is None for a in job.artifacts)
    assert all(ctx.storage.stat(k) is not None for k in keys)
    assert cleanup.run(ctx, now=later)["deleted_objects"] == len(keys)
