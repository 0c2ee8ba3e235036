"""Publication is all-or-nothing and fenced by the claim; cleanup removes what no row names."""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta

import pytest

from exporter import cleanup, jobs, orphans, reaper, runner
from exporter.db import utcnow
from exporter.kinds import KINDS, JobKind, load_all
from exporter.runner import STAGING


def _use_body(monkeypatch, body) -> None:
    load_all()
    monkeypatch.setitem(KINDS, "synthetic", JobKind(**{**KINDS["synthetic"].__dict__, "run": body}))


def _keys(ctx, prefix: str) -> list[str]:
    return [o.key for o in ctx.storage.list(prefix)]


def test_a_final_key_without_the_run_id_is_refused(ctx, monkeypatch):
    def body(run):
        run.add_artifact("data", f"pub/{run.job_id}/data.bin", b"x")

    _use_body(monkeypatch, body)
    job = jobs.submit(ctx, "synthetic", {})
    assert runner.run_job(ctx, job.id) == "failed"
    assert "must contain the run id" in jobs.get(ctx, job.id).error
    assert _keys(ctx, "pub/") == [] and _keys(ctx, STAGING + "/") == []


def test_a_job_cancelled_during_its_last_phase_publishes_nothing(ctx, monkeypatch):
    def body(run):
        run.add_artifact("data", f"pub/{run.job_id}/{run.run_id}/data.bin", b"payload")
        jobs.cancel(ctx, run.job_id)  # an operator cancels just as the work ends
        return {"ok": True}

    _use_body(monkeypatch, body)
    job = jobs.submit(ctx, "synthetic", {})
    assert runner.run_job(ctx, job.id) == "lost"
    done = jobs.get(ctx, job.id)
    assert done.status == "cancelled" and done.artifacts == []
    assert _keys(ctx, "pub/") == [] and _keys(ctx, STAGING + "/") == []


def test_a_claim_lost_between_moving_and_recording_removes_what_it_moved(ctx, monkeypatch):
    def body(run):
        run.add_artifact("data", f"pub/{run.job_id}/{run.run_id}/data.bin", b"payload")
        return {}

    real_publish = runner.JobRun.publish

    def publish_then_lose(self):
        out = real_publish(self)
        assert _keys(ctx, "pub/")  # moved to the final key...
        jobs.cancel(ctx, self.job_id)  # ...and the claim is gone before the success is recorded
        return out

    _use_body(monkeypatch, body)
    monkeypatch.setattr(runner.JobRun, "publish", publish_then_lose)
    job = jobs.submit(ctx, "synthetic", {})
    assert runner.run_job(ctx, job.id) == "lost"
    assert jobs.get(ctx, job.id).artifacts == []
    assert _keys(ctx, "pub/") == []


def test_a_failure_halfway_through_publishing_leaves_nothing_at_final_keys(ctx, monkeypatch):
    def body(run):
        for name in ("one", "two", "three"):
            run.add_artifact(name, f"pub/{run.job_id}/{run.run_id}/{name}.bin", name.encode())
        return {}

    real_move = type(ctx.storage).move
    moves = []

    def flaky_move(self, src, dst):
        moves.append(dst)
        if len(moves) == 2:
            raise OSError("connection reset while copying")
        return real_move(self, src, dst)

    _use_body(monkeypatch, body)
    monkeypatch.setattr(type(ctx.storage), "move", flaky_move)
    job = jobs.submit(ctx, "synthetic", {})
    assert runner.run_job(ctx, job.id) == "failed"
    assert len(moves) == 2
    assert _keys(ctx, "pub/") == [] and _keys(ctx, STAGING + "/") == []
    assert jobs.get(ctx, job.id).artifacts == []


def test_a_reaped_run_that_wakes_up_neither_publishes_nor_overwrites_the_run_that_replaced_it(ctx, monkeypatch):
    ctx.settings = ctx.settings.replace(heartbeat_seconds=3600)  # the first run stalls without beating
    first_waits, first_wrote = threading.Event(), threading.Event()
    runs = []

    def body(run):
        runs.append(run.run_id)
        mine = f"written by run {len(runs)}".encode()
        run.add_artifact("data", f"synthetic/{run.job_id}/{run.run_id}/data.bin", mine)
        if len(runs) == 1:
            first_wrote.set()
            first_waits.wait(30)
        return {"by": len(runs)}

    _use_body(monkeypatch, body)
    job = jobs.submit(ctx, "synthetic", {})
    outcome = {}
    stalled = threading.Thread(target=lambda: outcome.setdefault("first", runner.run_job(ctx, job.id)))
    stalled.start()
    assert first_wrote.wait(30)
    later = utcnow() + timedelta(seconds=ctx.settings.stale_after_seconds + 1)
    assert reaper.reap_jobs(ctx, now=later).requeued == [job.id]
    assert runner.run_job(ctx, job.id) == "succeeded"
    first_waits.set()
    stalled.join(30)
    assert outcome["first"] == "lost"

    done = jobs.get(ctx, job.id)
    assert done.status == "succeeded" and done.result["by"] == 2
    [art] = done.artifacts
    assert runs[1] in art.key and runs[0] != runs[1]
    assert hashlib.sha256(ctx.storage.read_bytes(art.key)).hexdigest() == art.sha256
    assert _keys(ctx, "synthetic/") == [art.key]
    assert _keys(ctx, STAGING + "/") == []


def test_cleanup_removes_objects_no_row_names_once_past_the_grace(ctx):
    job = jobs.submit(ctx, "synthetic", {"size": 16})
    assert runner.run_job(ctx, job.id) == "succeeded"
    [named] = jobs.get(ctx, job.id).artifacts
    orphan = f"synthetic/{job.id}/deadbeef/data.bin"  # what a run killed between move and commit leaves
    ctx.storage.write(orphan, b"half-published")
    unowned = "elsewhere/keep.bin"  # under no registered prefix: not cleanup's to judge
    ctx.storage.write(unowned, b"x")

    assert cleanup.run(ctx, orphan_grace_seconds=3600)["removed_orphans"] == 0  # too young: its row may be on the way
    assert ctx.storage.stat(orphan) is not None

    later = utcnow() + timedelta(hours=2)
    assert list(orphans.find(ctx, later, 3600)) == [orphan]
    assert cleanup.run(ctx, now=later, orphan_grace_seconds=3600)["removed_orphans"] == 1
    assert ctx.storage.stat(orphan) is None
    assert ctx.storage.stat(named.key) is not None and ctx.storage.stat(unowned) is not None


def test_an_owned_prefix_must_be_a_folder():
    with pytest.raises(ValueError, match="ends with '/'"):
        orphans.register("synthetic", orphans.artifact_keys)
