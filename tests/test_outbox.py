"""Webhook notifications are written in the transaction of the job's final status (a transactional outbox)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from exporter import cleanup, jobs, parts, reaper, runner, submissions, webhooks
from exporter.db import utcnow
from exporter.kinds import load_all
from exporter.models import Job

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
    if how == "reap":
        assert reaper.reap_jobs(octx, now=utcnow() + timedelta(hours=1)).failed == []  # logged; the reaper goes on
    else:
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
    assert cleanup.run(octx, now=later)["expired_jobs"] == 0  # rolled back and logged; cleanup goes on
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


ENDING = threading.Event()
RELEASE = threading.Event()


def pause_in_the_final_transaction(ctx, session, job_id, status):
    """An ON_FINAL hook that holds the final status' transaction open (after the outbox rows are written)."""
    ENDING.set()
    assert RELEASE.wait(30)


def test_a_callback_attached_while_the_job_ends_is_told(octx, monkeypatch):
    """Two at once: a request joins a running job with a new callback URL while the runner
    commits the job's success; whichever commits first, the new URL gets its notification."""
    ENDING.clear()
    RELEASE.clear()
    params = {"size": 8, "steps": 1}
    first = submissions.request_job(octx, "synthetic", params, callback_urls=[URL], enqueue=False)
    token = jobs.claim(octx, first.job.id)
    monkeypatch.setattr(jobs, "ON_FINAL", [webhooks.on_final, pause_in_the_final_transaction])
    ending = threading.Thread(target=jobs.succeed, args=(octx, first.job.id, token, {}, []))
    ending.start()
    assert ENDING.wait(30)  # the success and the first URL's outbox row are written, not committed
    joined: dict = {}
    joining = threading.Thread(target=lambda: joined.setdefault("s", submissions.request_job(octx, "synthetic", params, callback_urls=[URL + "/late"])))
    joining.start()
    joining.join(2)  # with the fix it waits for the final status' commit; without, it joins at once
    RELEASE.set()
    ending.join(30)
    joining.join(30)
    assert joined["s"].job.id == first.job.id
    assert jobs.get(octx, first.job.id).status == "succeeded"
    told = {(n.url, n.event) for n in notifications(octx, first.job.id)}
    assert told == {(URL, "succeeded"), (URL + "/late", "succeeded")}
    assert len(sent_webhooks(octx)) == 2


def test_a_fanned_out_job_ends_with_its_webhook_whether_its_last_part_or_the_reaper_finishes_it(octx, monkeypatch):
    from tests.test_parts import _fan_out

    job_id, ids = _fan_out(octx, 2, 1)
    with octx.db.session() as s:
        webhooks.add_callbacks(s, job_id, [URL])
    assert parts.run_part(octx, ids[0]) == "done"
    monkeypatch.setattr(jobs, "ON_FINAL", [webhooks.on_final, broken_database])
    with pytest.raises(Exception, match="no_such_table"):
        parts.run_part(octx, ids[1])  # the last part's finish: its success and failure both roll back
    assert jobs.get(octx, job_id).status == "running" and notifications(octx, job_id) == []
    assert reaper.reap_parts(octx).finished == []  # the same error in the reaper: logged, its pass goes on
    monkeypatch.setattr(jobs, "ON_FINAL", [webhooks.on_final])
    assert reaper.reap_parts(octx).finished == [job_id]  # every part done, the parent not: the reaper finishes it
    assert jobs.get(octx, job_id).status == "succeeded"
    assert [(n.url, n.event) for n in notifications(octx, job_id)] == [(URL, "succeeded")]


def broken_for_marked_jobs(ctx, session, job_id, status):
    """An ON_FINAL hook that fails for jobs described 'poisoned' (a hook's bug met by one job's data)."""
    if session.get(Job, job_id).description == "poisoned":
        session.execute(text("SELECT * FROM no_such_table"))


def test_a_job_whose_final_transaction_fails_stops_no_other_job_the_reaper_settles(octx, monkeypatch):
    octx.settings = octx.settings.replace(max_attempts=1)
    poisoned = jobs.submit(octx, "synthetic", {"size": 5}, description="poisoned")
    other = jobs.submit(octx, "synthetic", {"size": 6})
    for job in (poisoned, other):
        assert jobs.claim(octx, job.id)  # their workers die: both stale, both at MAX_ATTEMPTS
    monkeypatch.setattr(jobs, "ON_FINAL", [webhooks.on_final, broken_for_marked_jobs])
    report = reaper.reap_jobs(octx, now=utcnow() + timedelta(hours=1))
    assert report.failed == [other.id]
    assert jobs.get(octx, other.id).status == "failed"
    assert jobs.get(octx, poisoned.id).status == "running"  # rolled back alone; tried again at the next run


def test_a_job_whose_expiry_fails_stops_no_other_expiry(octx, monkeypatch):
    done = []
    for description in ("poisoned", "fine"):
        job = jobs.submit(octx, "synthetic", {"size": 5}, description=description)
        assert runner.run_job(octx, job.id) == "succeeded"
        done.append(job.id)
    monkeypatch.setattr(jobs, "ON_FINAL", [webhooks.on_final, broken_for_marked_jobs])
    assert cleanup.run(octx, now=utcnow() + timedelta(days=3650))["expired_jobs"] == 1
    assert [jobs.get(octx, j).status for j in done] == ["succeeded", "expired"]
