"""Fan-out parts on SQLite and PostgreSQL: the last part finishes the parent once; a cancelled parent stops its parts."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select, update

from exporter import jobs, parts, reaper, runner
from exporter.db import utcnow
from exporter.kinds import JobKind, register

KIND = "test_fanout"
work_done: list[tuple[str, list[int]]] = []
finishes: list[str] = []
barrier: list[threading.Barrier] = []


def _run(job) -> object:
    return parts.fan_out(job.ctx, job.job_id, list(range(job.params["n"])), job.params["chunk"], {"n": job.params["n"]})


def _work(ctx, job, items, seq) -> None:
    work_done.append((job.id, items))
    if barrier:
        barrier[0].wait(10)


def _finish(ctx, job, state) -> dict:
    finishes.append(job.id)
    return {"items": state["n"], "parts": len([w for w in work_done if w[0] == job.id])}


register(JobKind(name=KIND, task="exporter.test_fanout", queue="engine", run=_run, normalize=lambda p: {"n": int(p["n"]), "chunk": int(p["chunk"])}))
parts.register_handler(KIND, _work, _finish)


def _fan_out(ctx, n: int, chunk: int) -> tuple[str, list[int]]:
    sent: list[str] = []
    ctx.enqueue = lambda task, arg, queue: sent.append(arg) if task == parts.PART_TASK else None
    job = jobs.submit(ctx, KIND, {"n": n, "chunk": chunk}, enqueue=False)
    assert runner.run_job(ctx, job.id) == "fanned_out"
    return job.id, [int(a) for a in sent]


def test_the_last_part_finishes_the_parent_once_when_two_complete_at_once(ctx):
    job_id, ids = _fan_out(ctx, 5, 2)
    assert len(ids) == 3 and jobs.get(ctx, job_id).status == "running"
    assert parts.run_part(ctx, ids[0]) == "done"
    assert jobs.get(ctx, job_id).progress_done == 2
    barrier.append(threading.Barrier(2))
    try:
        threads = [threading.Thread(target=parts.run_part, args=(ctx, i)) for i in ids[1:]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        barrier.clear()
    assert finishes.count(job_id) == 1
    job = jobs.get(ctx, job_id)
    assert job.status == "succeeded" and job.result == {"items": 5, "parts": 3}
    assert (job.progress_done, job.progress_total) == (5, 5)
    assert parts.run_part(ctx, ids[2]) == "skipped"  # a duplicate message changes nothing
    assert not parts.finish_if_complete(ctx, job_id) and finishes.count(job_id) == 1


def test_a_cancelled_parent_makes_its_remaining_parts_no_ops(ctx):
    job_id, ids = _fan_out(ctx, 4, 1)
    assert parts.run_part(ctx, ids[0]) == "done"
    jobs.cancel(ctx, job_id)
    for part_id in ids[1:]:
        assert parts.run_part(ctx, part_id) == "done"
    assert [items for j, items in work_done if j == job_id] == [[0]]
    assert jobs.get(ctx, job_id).status == "cancelled" and job_id not in finishes


def test_the_reaper_leaves_a_fanned_out_parent_alone_and_finishes_one_whose_parts_are_done(ctx):
    job_id, ids = _fan_out(ctx, 2, 1)
    old = utcnow() - timedelta(seconds=ctx.settings.stale_after_seconds + 60)
    with ctx.db.session() as s:
        s.execute(update(jobs.Job).where(jobs.Job.id == job_id).values(heartbeat_at=old))
    assert job_id not in reaper.reap_jobs(ctx).requeued and jobs.get(ctx, job_id).status == "running"
    token = parts.claim(ctx, ids[0])
    assert parts.complete(ctx, ids[0], token, 1) is False  # not the last
    token = parts.claim(ctx, ids[1])  # this worker dies: its heartbeat stops
    with ctx.db.session() as s:
        s.execute(update(parts.JobPart).where(parts.JobPart.id == ids[1]).values(heartbeat_at=old))
    sent: list[str] = []
    ctx.enqueue = lambda task, arg, queue: sent.append(arg)
    report = reaper.reap_parts(ctx)
    assert report.requeued == [ids[1]] and sent == [str(ids[1])]
    token = parts.claim(ctx, ids[1])
    assert parts.complete(ctx, ids[1], token, 1) is True  # the last, but the worker died before finishing the parent
    assert jobs.get(ctx, job_id).status == "running"
    assert reaper.reap_parts(ctx).finished == [job_id]
    assert jobs.get(ctx, job_id).status == "succeeded" and finishes.count(job_id) == 1
    with ctx.db.session() as s:
        assert set(s.scalars(select(parts.JobPart.status).where(parts.JobPart.job_id == job_id))) == {"done"}


def test_a_waiting_part_gets_a_second_message_only_when_the_broker_lost_the_first(ctx):
    job_id, ids = _fan_out(ctx, 1, 1)
    later = utcnow() + timedelta(seconds=ctx.settings.pending_timeout_seconds + 1)
    sent: list[str] = []
    ctx.enqueue = lambda task, arg, queue: sent.append(arg)
    ctx.queued_ids = None
    assert reaper.reap_parts(ctx, now=later).requeued == []  # the broker cannot tell: leave it
    ctx.queued_ids = lambda queues: {str(ids[0])}
    assert reaper.reap_parts(ctx, now=later).requeued == []  # still queued: a backlog
    ctx.queued_ids = lambda queues: set()
    assert reaper.reap_parts(ctx, now=later).requeued == ids and sent == [str(ids[0])]
    assert jobs.get(ctx, job_id).status == "running"
