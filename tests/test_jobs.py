"""The job lifecycle on both database backends."""

from __future__ import annotations

from datetime import timedelta

import pytest

from exporter import cleanup, jobs, reaper, runner
from exporter.db import utcnow
from exporter.errors import InvalidRequest, JobLost


def test_submit_inserts_then_enqueues(ctx):
    job = jobs.submit(ctx, "synthetic", {"steps": 2, "size": 10}, requested_by="alice")
    assert ctx.sent == [("exporter.write_synthetic", job.id, "engine")]
    stored = jobs.get(ctx, job.id)
    assert stored.status == "pending"
    assert stored.params == {"delay": 0.0, "size": 10, "steps": 2}
    assert stored.requested_by == "alice"


def test_dedupe_key_ignores_order_and_defaults(ctx):
    a = jobs.submit(ctx, "synthetic", {"size": 10, "steps": 2})
    b = jobs.submit(ctx, "synthetic", {"steps": 2, "size": 10, "delay": 0.0})
    c = jobs.submit(ctx, "synthetic", {"steps": 3, "size": 10})
    assert a.dedupe_key == b.dedupe_key != c.dedupe_key


def test_bad_params_are_refused_with_the_field(ctx):
    with pytest.raises(InvalidRequest) as err:
        jobs.submit(ctx, "synthetic", {"size": -1})
    assert err.value.field == "size"
    with pytest.raises(InvalidRequest) as err:
        jobs.submit(ctx, "nonsense", {})
    assert err.value.field == "kind"
    assert jobs.list_jobs(ctx) == []


def test_claim_is_compare_and_set(ctx):
    job = jobs.submit(ctx, "synthetic", {})
    first = jobs.claim(ctx, job.id)
    assert first is not None
    assert jobs.claim(ctx, job.id) is None
    stored = jobs.get(ctx, job.id)
    assert (stored.status, stored.attempts) == ("running", 1)


def test_only_the_claim_holder_reports_and_finishes(ctx):
    job = jobs.submit(ctx, "synthetic", {})
    token = jobs.claim(ctx, job.id)
    jobs.progress(ctx, job.id, token, 5, 10)
    assert jobs.get(ctx, job.id).percentage == 50
    with pytest.raises(JobLost):
        jobs.progress(ctx, job.id, "not-the-token", 6, 10)
    with pytest.raises(JobLost):
        jobs.succeed(ctx, job.id, "not-the-token", {}, [])
    jobs.succeed(ctx, job.id, token, {"ok": 1}, [])
    with pytest.raises(JobLost):
        jobs.succeed(ctx, job.id, token, {}, [])
    done = jobs.get(ctx, job.id)
    assert done.status == "succeeded" and done.percentage == 100 and done.expires_at > utcnow()


def test_run_job_publishes_one_artifact_and_is_idempotent(ctx):
    job = jobs.submit(ctx, "synthetic", {"size": 3000, "steps": 3})
    assert runner.run_job(ctx, job.id) == "succeeded"
    assert runner.run_job(ctx, job.id) == "skipped:succeeded"
    done = jobs.get(ctx, job.id)
    [art] = done.artifacts
    assert art.size == 3000 and len(art.sha256) == 64
    keys = [o.key for o in ctx.storage.list("")]
    assert keys == [art.key]
    assert done.progress_done == done.progress_total == 3000


def test_cancel_stops_a_running_job(ctx):
    job = jobs.submit(ctx, "synthetic", {})
    token = jobs.claim(ctx, job.id)
    jobs.cancel(ctx, job.id)
    with pytest.raises(JobLost):
        jobs.heartbeat(ctx, job.id, token)
    assert jobs.get(ctx, job.id).status == "cancelled"
    assert jobs.claim(ctx, job.id) is None


def test_failure_is_recorded_with_the_reason(ctx, monkeypatch):
    import exporter.synthetic as synthetic

    def boom(run):
        run.add_artifact("data", f"x/{run.run_id}/data.bin", b"partial")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(synthetic, "run", boom)
    from exporter.kinds import KINDS, JobKind

    monkeypatch.setitem(KINDS, "synthetic", JobKind(**{**KINDS["synthetic"].__dict__, "run": boom}))
    job = jobs.submit(ctx, "synthetic", {})
    assert runner.run_job(ctx, job.id) == "failed"
    failed = jobs.get(ctx, job.id)
    assert failed.status == "failed" and "disk on fire" in failed.error
    assert list(ctx.storage.list("")) == []  # the staged artifact was discarded


def test_reaper_requeues_stale_running_and_lost_pending_then_gives_up(ctx):
    cfg = ctx.settings
    stale = jobs.submit(ctx, "synthetic", {"size": 1})
    lost = jobs.submit(ctx, "synthetic", {"size": 2})
    fresh = jobs.submit(ctx, "synthetic", {"size": 3})
    jobs.claim(ctx, stale.id)
    ctx.sent.clear()
    later = utcnow() + timedelta(seconds=max(cfg.stale_after_seconds, cfg.pending_timeout_seconds) + 1)
    jobs.claim(ctx, fresh.id)
    with ctx.db.session() as s:
        from exporter.models import Job

        s.get(Job, fresh.id).heartbeat_at = later + timedelta(days=1)
    assert ctx.queued_ids is None  # a broker that cannot tell: a waiting job is left alone
    report = reaper.reap_jobs(ctx, now=later)
    assert (report.requeued, report.waiting, report.failed) == ([stale.id], [lost.id], [])
    assert [j for _, j, _ in ctx.sent] == [stale.id]
    assert jobs.get(ctx, stale.id).status == "pending"
    assert jobs.get(ctx, fresh.id).status == "running"
    assert jobs.claim(ctx, stale.id)
    ctx.queued_ids = lambda queues: {lost.id}  # its message is still queued: a backlog, not a loss
    later = later + timedelta(seconds=cfg.stale_after_seconds + 1)
    report = reaper.reap_jobs(ctx, now=later)
    assert (report.requeued, report.waiting, report.failed) == ([stale.id], [lost.id], [])
    assert jobs.get(ctx, lost.id).status == "pending"
    # Keep killing the same job: once it has had MAX_ATTEMPTS claims the reaper fails it.
    assert cfg.max_attempts == 3 and jobs.claim(ctx, stale.id)
    ctx.sent.clear()
    ctx.queued_ids = lambda queues: set()  # the broker lost the waiting job's message
    later = later + timedelta(seconds=cfg.stale_after_seconds + 1)
    report = reaper.reap_jobs(ctx, now=later)
    assert (report.requeued, report.failed) == ([lost.id], [stale.id])
    assert [j for _, j, _ in ctx.sent] == [lost.id]
    gave_up = jobs.get(ctx, stale.id)
    assert gave_up.status == "failed" and "gave up after 3 attempt(s)" in gave_up.error
    assert jobs.claim(ctx, stale.id) is None


def test_task_status_counts_failures_and_resets_on_success(ctx):
    with ctx.db.session() as s:
        jobs.record_task_status(s, "resource", "r1", "archiver", "failed", error="timeout")
        row = jobs.record_task_status(s, "resource", "r1", "archiver", "failed", error="timeout")
        assert row.failure_count == 2
        row = jobs.record_task_status(s, "resource", "r1", "archiver", "succeeded", value={"size": 3})
        assert row.failure_count == 0 and row.value == {"size": 3}


def test_cleanup_expires_artifacts_and_keeps_the_record(ctx):
    job = jobs.submit(ctx, "synthetic", {"size": 100, "steps": 1})
    runner.run_job(ctx, job.id)
    key = jobs.get(ctx, job.id).artifacts[0].key
    assert cleanup.run(ctx)["expired_jobs"] == 0
    report = cleanup.run(ctx, now=utcnow() + timedelta(seconds=ctx.settings.job_expiry_seconds + 1))
    assert report["expired_jobs"] == 1 and report["deleted_objects"] == 1
    expired = jobs.get(ctx, job.id)
    assert expired.status == "expired" and expired.artifacts[0].deleted_at is not None
    assert ctx.storage.stat(key) is None


def test_jobs_cli_lists_and_shows(ctx):
    import json

    from click.testing import CliRunner

    from cli.main import main

    job = jobs.submit(ctx, "synthetic", {})
    runner_ = CliRunner()
    out = runner_.invoke(main, ["jobs", "list"])
    assert out.exit_code == 0 and job.id in out.output and "pending" in out.output
    out = runner_.invoke(main, ["jobs", "show", job.id])
    assert out.exit_code == 0 and json.loads(out.output)["kind"] == "synthetic"
    out = runner_.invoke(main, ["jobs", "show", "no-such-job"])
    assert out.exit_code != 0 and "no job no-such-job" in out.output


def test_outcome_hooks_run_after_the_end_is_committed_even_when_publishing_fails(ctx, monkeypatch):
    from exporter.kinds import KINDS, JobKind

    seen = []

    def body(run):
        run.on_outcome(lambda status, error, result: seen.append((status, jobs.get(ctx, run.job_id).status, error)))
        run.add_artifact("data", f"x/{run.run_id}/data.bin", b"payload")
        return {"ok": True}

    monkeypatch.setitem(KINDS, "synthetic", JobKind(**{**KINDS["synthetic"].__dict__, "run": body}))
    job = jobs.submit(ctx, "synthetic", {})
    assert runner.run_job(ctx, job.id) == "succeeded"
    assert seen == [("succeeded", "succeeded", None)]

    seen.clear()
    monkeypatch.setattr(type(ctx.storage), "move", lambda self, src, dst: (_ for _ in ()).throw(OSError("disk full")))
    job = jobs.submit(ctx, "synthetic", {"size": 2})
    assert runner.run_job(ctx, job.id) == "failed"
    assert seen == [("failed", "failed", "OSError: disk full")]
