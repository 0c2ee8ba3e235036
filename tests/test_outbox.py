"""Webhook notifications are written in the transaction of the job's final status (a transactional outbox)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from exporter import cleanup, jobs, reaper, runner, webhooks
from exporter.db import utcnow
from exporter.kinds import load_all

from .test_webhooks import LOOPBACK, job_with_callbacks, notifications, sent_webhooks

URL = "http://127.0.0.1:9/hook"


def broken_database(ctx, session, job_id, status):
    """An ON_FINAL hook that hits a database error after the final status and the outbox rows are written."""
    session.execute(text("SELECT * FROM no_such_table"))


@pytest.fixture
def octx(ctx):
    ctx.settings = ctx.settings.replace(webhook_allow_networks=LOOPBACK)
    load_all()  # the families append their hooks to jobs.ON_FINAL now, not to a list a test swaps in
    return ctx


def end(ctx, how: str, job_id: str, token: str) -> None:
    if how == "succeed":
        jobs.succeed(ctx, job_id, token, {"rows": 0}, [])
    elif how == "fail":
        jobs.fail(ctx, job_id, token, "source unreachable")
    elif how == "cancel":
        jobs.cancel(ctx, job_id)
    else:
        reaper.reap_jobs(ctx, now=utcnow() + timedelta(hours=1))


@pytest.mark.parametrize("how", ["succeed", "fail", "cancel", "reap"])
def test_a_database_error_before_the_commit_loses_neither_status_nor_webhook(octx, monkeypatch, how):
    octx.settings = octx.settings.replace(max_attempts=1)
    job = job_with_callbacks(octx, [URL])
    token = jobs.claim(octx, job.id)
    monkeypatch.setattr(jobs, "ON_FINAL", [webhooks.on_final, broken_database])
    with pytest.raises(Exception, match="no_such_table"):
        end(octx, how, job.id, token)
    still = jobs.get(octx, job.id)
    assert (still.status, still.claim_token) == ("running", token)  # rolled back together: still ours
    assert notifications(octx, job.id) == [] and sent_webhooks(octx) == []
    monkeypatch.setattr(jobs, "ON_FINAL", [webhooks.on_final])
    end(octx, how, job.id, token)
    status = jobs.get(octx, job.id).status
    assert status == {"succeed": "succeeded", "cancel": "cancelled"}.get(how, "failed")
    [n] = notifications(octx, job.id)
    assert n.event == status and sent_webhooks(octx) == [str(n.id)]


def test_expiry_and_its_webhook_commit_together(octx, monkeypatch):
    job = job_with_callbacks(octx, [URL])
    assert runner.run_job(octx, job.id) == "succeeded"
    keys = [a.key for a in jobs.get(octx, job.id).artifacts]
    later = utcnow() + timedelta(days=3650)
    monkeypatch.setattr(jobs, "ON_FINAL", [webhooks.on_final, broken_database])
    with pytest.raises(Exception, match="no_such_table"):
        cleanup.run(octx, now=later)
    assert jobs.get(octx, job.id).status == "succeeded"
    assert [n.event for n in notifications(octx, job.id)] == ["succeeded"]
    assert all(octx.storage.stat(k) is not None for k in keys)
    monkeypatch.setattr(jobs, "ON_FINAL", [webhooks.on_final])
    assert cleanup.run(octx, now=later)["expired_jobs"] == 1
    assert [n.event for n in notifications(octx, job.id)] == ["succeeded", "expired"]


def test_a_lost_delivery_message_is_resent_by_the_sweep(octx, monkeypatch):
    job = job_with_callbacks(octx, [URL])

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(octx, "enqueue", broker_down)
    assert runner.run_job(octx, job.id) == "succeeded"  # the message is lost after the commit
    [n] = notifications(octx, job.id)
    monkeypatch.undo()
    assert webhooks.sweep(octx, now=utcnow() + timedelta(minutes=5)) == [n.id]
