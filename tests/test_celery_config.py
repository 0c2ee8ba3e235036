"""Celery settings that the job lifecycle relies on, and the beat schedule."""

from __future__ import annotations

from workers.app import celery_app


def test_reliability_settings():
    conf = celery_app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.worker_send_task_events and conf.task_send_sent_event
    assert {q.name for q in conf.task_queues} == {"engine", "exports", "archive", "webhooks", "publish", "dumps", "collections"}


def test_every_task_is_named_exporter_verb_and_beat_entries_exist():
    import workers.tasks  # noqa: F401  (registers the tasks)

    names = {n for n in celery_app.tasks if not n.startswith("celery.")}
    assert names and all(n.startswith("exporter.") for n in names)
    scheduled = {entry["task"] for entry in celery_app.conf.beat_schedule.values()}
    assert {"exporter.reap", "exporter.cleanup"} <= scheduled
    assert scheduled <= names, f"beat schedules unknown tasks: {scheduled - names}"


def test_redis_visibility_timeout_outlives_the_longest_job(monkeypatch):
    import importlib

    import celeryconfig

    monkeypatch.setenv("EXPORTER_BROKER_URL", "redis://127.0.0.1:6379/0")
    try:
        cfg = importlib.reload(celeryconfig)
        assert cfg.broker_transport_options["visibility_timeout"] > cfg.task_time_limit
    finally:
        monkeypatch.undo()
        importlib.reload(celeryconfig)


def test_transient_errors_retry_with_celerys_backoff_then_fail_the_job(ctx, monkeypatch):
    """A job task's TransientError goes back to the queue with full-jitter exponential
    backoff (10 s doubling, at most 600 s); after the last retry the job fails saying why."""
    import workers.tasks as tasks
    from exporter import jobs
    from exporter.errors import TransientError

    task = celery_app.tasks["exporter.write_synthetic"]
    job = jobs.submit(ctx, "synthetic", {"size": 8}, enqueue=False)
    runs: list[int] = []
    countdowns: list[float] = []

    def flaky(ctx_, job_id):
        runs.append(task.request.retries)
        raise TransientError("the disk is busy")

    real_retry = task.retry

    def spy(*args, **kwargs):
        countdowns.append(kwargs["countdown"])
        return real_retry(*args, **kwargs)

    monkeypatch.setattr(tasks.runner, "run_job", flaky)
    monkeypatch.setattr(task, "retry", spy)
    result = task.apply(args=[job.id])  # eager: each retry runs at once, with retries + 1
    assert result.get() == "failed"
    assert runs == list(range(tasks.MAX_TRANSIENT_RETRIES + 1))
    assert len(countdowns) == tasks.MAX_TRANSIENT_RETRIES
    assert all(0 <= c <= min(600, 10 * 2**n) for n, c in enumerate(countdowns)), countdowns
    done = jobs.get(ctx, job.id)
    assert done.status == "failed" and done.error == f"gave up after {tasks.MAX_TRANSIENT_RETRIES + 1} transient errors: the disk is busy"
