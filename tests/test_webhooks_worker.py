"""Webhooks through a real Celery worker on Redis: a receiver that fails twice still gets the call."""

from __future__ import annotations

from exporter import jobs, runner, webhooks

from .webhook_receiver import start_receiver
from .workers import WorkerProcess, redis_broker, sender, wait_for, worker_env

REDIS_DB = 12


def test_worker_retries_a_failing_receiver_with_backoff_until_it_answers(pg_ctx, tmp_path):
    ctx = pg_ctx
    broker = redis_broker(REDIS_DB)
    ctx.enqueue = sender(broker)
    receiver, server = start_receiver()
    receiver.plan = [500, 502]
    env = worker_env(ctx.settings, broker, EXPORTER_WEBHOOK_ALLOW_NETWORKS="127.0.0.1/32", EXPORTER_WEBHOOK_RETRY_BASE="0.3", EXPORTER_WEBHOOK_RETRY_CAP="1")
    worker = WorkerProcess(env, tmp_path / "worker.log", queues="webhooks")
    try:
        job = jobs.submit(ctx, "synthetic", {"size": 50}, enqueue=False, description="webhook via worker")
        with ctx.db.session() as s:
            webhooks.add_callbacks(s, job.id, [receiver.url])
        assert runner.run_job(ctx, job.id) == "succeeded"  # ending the job enqueues exporter.deliver_webhook
        calls = receiver.wait_for(3, 60)
        rows = wait_for(lambda: [r for r in webhooks.deliveries_of(ctx, job.id) if r.delivered], 30, "the delivered attempt to be recorded")
    finally:
        worker.stop()
        server.shutdown()
        server.server_close()
    assert len(calls) == 3
    for call in calls:
        assert webhooks.verify_signature(ctx.settings.secret_key, call.headers[webhooks.TIMESTAMP_HEADER], call.body, call.headers[webhooks.SIGNATURE_HEADER])
        assert call.json["jobId"] == job.id and call.json["status"] == "completed"
    attempts = webhooks.deliveries_of(ctx, job.id)
    assert [(a.attempt, a.status_code, a.delivered) for a in attempts] == [(1, 500, False), (2, 502, False), (3, 200, True)]
    assert all(a.next_attempt_at is not None for a in attempts[:2]) and rows[0].next_attempt_at is None
    assert [n.state for n in webhooks.notifications_of(ctx, job.id)] == ["delivered"]
    assert worker.text().count("exporter.deliver_webhook") >= 3
