"""Webhooks on both database backends: registration, address rules, signing, retries, expiry."""

from __future__ import annotations

import ipaddress
import random
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from exporter import cleanup, jobs, reaper, runner, webhooks
from exporter.db import utcnow
from exporter.errors import InvalidRequest
from exporter.webhooks import WebhookNotification

from .http_servers import TricklingServer
from .webhook_receiver import start_receiver

LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)


@pytest.fixture
def receiver():
    rcv, server = start_receiver()
    yield rcv
    server.shutdown()
    server.server_close()


@pytest.fixture
def hctx(ctx):
    """The ctx with the loopback receiver allowlisted and quick retries."""
    ctx.settings = ctx.settings.replace(webhook_allow_networks=LOOPBACK, webhook_retry_base=0.05, webhook_retry_cap=0.2, webhook_timeout=5)
    return ctx


def sent_webhooks(ctx) -> list[str]:
    return [job_id for task, job_id, queue in ctx.sent if task == webhooks.TASK and queue == "webhooks"]


def job_with_callbacks(ctx, urls, **params):
    job = jobs.submit(ctx, "synthetic", {"size": 300, "steps": 3, **params}, description="nightly")
    with ctx.db.session() as s:
        webhooks.add_callbacks(s, job.id, urls)
    return job


def deliver_once(ctx, url: str) -> webhooks.Outcome:
    """A job with one callback to `url`, run, and its webhook's first delivery attempt."""
    job = job_with_callbacks(ctx, [url])
    runner.run_job(ctx, job.id)
    return webhooks.deliver(ctx, int(sent_webhooks(ctx)[0]))


def notifications(ctx, job_id):
    return webhooks.notifications_of(ctx, job_id)


def test_callback_urls_obey_the_address_rules(ctx):
    for url, words in [
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://localhost:9/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "metadata"),
        ("http://[::1]:9/hook", "loopback"),
        ("ftp://example.org/hook", "http or https"),
        ("example.org/hook", "'example.org/hook' must be http or https (start with http:// or https://)"),
        ("http:///nohost", "no host"),
        ("http://example.org:99999/", "malformed"),
        (42, "string"),
        ("https://" + "a" * 3000 + ".org/", "longer"),
    ]:
        with pytest.raises(InvalidRequest) as err:
            webhooks.validate_callback_url(ctx, url)
        assert err.value.field == "callbackURLs"
        assert words in str(err.value), (url, str(err.value))
    assert webhooks.validate_callback_url(ctx, " https://93.184.216.34/hook ") == "https://93.184.216.34/hook"
    with pytest.raises(InvalidRequest):
        webhooks.validate_callback_urls(ctx, "https://93.184.216.34/hook")
    assert webhooks.validate_callback_urls(ctx, ["https://93.184.216.34/a", "https://93.184.216.34/a"]) == ["https://93.184.216.34/a"]
    ctx.settings = ctx.settings.replace(webhook_allow_networks=LOOPBACK)
    assert webhooks.validate_callback_url(ctx, "http://127.0.0.1:9/hook") == "http://127.0.0.1:9/hook"


def test_add_callbacks_skips_ones_the_job_has(ctx):
    job = jobs.submit(ctx, "synthetic", {})
    with ctx.db.session() as s:
        assert len(webhooks.add_callbacks(s, job.id, ["https://a.example/1", "https://a.example/1"])) == 1
    with ctx.db.session() as s:
        assert [c.url for c in webhooks.add_callbacks(s, job.id, ["https://a.example/1", "https://a.example/2"])] == ["https://a.example/2"]
    assert webhooks.callbacks_of(ctx, job.id) == ["https://a.example/1", "https://a.example/2"]


def test_every_end_of_a_job_enqueues_its_webhooks_once(ctx):
    urls = ["https://a.example/1", "https://b.example/2"]
    done = job_with_callbacks(ctx, urls)
    assert runner.run_job(ctx, done.id) == "succeeded"
    ids = sent_webhooks(ctx)
    assert len(ids) == 2
    assert {(n.url, n.event, n.state) for n in notifications(ctx, done.id)} == {(u, "succeeded", "pending") for u in urls}
    assert webhooks.job_finished(ctx, done.id, "succeeded") == []  # told once

    failed = job_with_callbacks(ctx, urls[:1])
    jobs.fail(ctx, failed.id, jobs.claim(ctx, failed.id), "boom")
    cancelled = job_with_callbacks(ctx, urls[:1])
    jobs.cancel(ctx, cancelled.id)
    reaped = job_with_callbacks(ctx, urls[:1])
    ctx.settings = ctx.settings.replace(max_attempts=1)
    jobs.claim(ctx, reaped.id)
    assert reaper.reap_jobs(ctx, now=utcnow() + timedelta(hours=1)).failed == [reaped.id]
    quiet = jobs.submit(ctx, "synthetic", {"size": 7})
    runner.run_job(ctx, quiet.id)

    for job, event in [(failed, "failed"), (cancelled, "cancelled"), (reaped, "failed")]:
        assert [n.event for n in notifications(ctx, job.id)] == [event]
    assert len(sent_webhooks(ctx)) == 5
    assert notifications(ctx, quiet.id) == []


def test_delivery_is_signed_and_says_what_happened(hctx, receiver):
    job = job_with_callbacks(hctx, [receiver.url])
    runner.run_job(hctx, job.id)
    [nid] = sent_webhooks(hctx)
    outcome = webhooks.deliver(hctx, int(nid))
    assert (outcome.state, outcome.status_code, outcome.retry_in) == ("delivered", 200, None)
    [call] = receiver.calls
    stored = jobs.get(hctx, job.id)
    body = call.json
    assert set(body) == {"jobId", "status", "description", "links", "fileSize", "expirationTime", "errorReason"}
    assert (body["jobId"], body["status"], body["description"], body["errorReason"]) == (job.id, "completed", "nightly", None)
    assert body["fileSize"] == 300 == stored.artifacts[0].size
    assert body["links"]["dataURI"].startswith(f"http://127.0.0.1:8000/api/v1/exports/{job.id}/download?artifact=data&")
    assert body["links"]["manifestURI"] is None
    assert body["expirationTime"] == stored.to_dict()["expires_at"]
    ts, sig = call.headers[webhooks.TIMESTAMP_HEADER], call.headers[webhooks.SIGNATURE_HEADER]
    assert webhooks.verify_signature("test-secret-key-0123456789", ts, call.body, sig)
    assert not webhooks.verify_signature("test-secret-key-0123456789", ts, call.body.replace(b"completed", b"failed"), sig)
    assert not webhooks.verify_signature("another-secret-key-0123", ts, call.body, sig)
    assert not webhooks.verify_signature("test-secret-key-0123456789", str(int(ts) - 3600), call.body, sig)
    assert call.headers["X-Exporter-Event"] == "job.completed"
    [attempt] = webhooks.deliveries_of(hctx, job.id)
    assert (attempt.attempt, attempt.status_code, attempt.delivered, attempt.error) == (1, 200, True, None)
    assert webhooks.deliver(hctx, int(nid)).state == "skipped"  # a duplicate message sends nothing
    assert len(receiver.calls) == 1


def test_a_webhook_secret_setting_replaces_the_secret_key(hctx, receiver):
    hctx.settings = hctx.settings.replace(webhook_secret="webhook-only-secret")
    job = job_with_callbacks(hctx, [receiver.url])
    jobs.fail(hctx, job.id, jobs.claim(hctx, job.id), "source unreachable")
    webhooks.deliver(hctx, int(sent_webhooks(hctx)[0]))
    [call] = receiver.calls
    assert webhooks.verify_signature("webhook-only-secret", call.headers[webhooks.TIMESTAMP_HEADER], call.body, call.headers[webhooks.SIGNATURE_HEADER])
    assert (call.json["status"], call.json["errorReason"], call.json["links"], call.json["fileSize"]) == ("failed", "source unreachable", None, None)


def test_failed_attempts_are_recorded_and_retried_with_backoff(hctx, receiver):
    hctx.settings = hctx.settings.replace(webhook_retry_base=30, webhook_retry_cap=600)
    receiver.plan = [500, 503]
    job = job_with_callbacks(hctx, [receiver.url])
    runner.run_job(hctx, job.id)
    nid = int(sent_webhooks(hctx)[0])
    first = webhooks.deliver(hctx, nid)
    assert (first.state, first.status_code) == ("retry", 500)
    assert 15 <= first.retry_in <= 30
    assert webhooks.deliver(hctx, nid).state == "skipped"  # not due yet
    later = utcnow() + timedelta(seconds=31)
    second = webhooks.deliver(hctx, nid, now=later)
    assert second.state == "retry" and 30 <= second.retry_in <= 60
    assert webhooks.deliver(hctx, nid, now=later + timedelta(seconds=61)).state == "delivered"
    rows = webhooks.deliveries_of(hctx, job.id)
    assert [(r.attempt, r.status_code, r.delivered) for r in rows] == [(1, 500, False), (2, 503, False), (3, 200, True)]
    assert rows[0].error == "HTTP 500: ok" and rows[0].next_attempt_at is not None and rows[2].next_attempt_at is None
    assert [c.headers["X-Exporter-Attempt"] for c in receiver.calls] == ["1", "2", "3"]
    [n] = notifications(hctx, job.id)
    assert (n.state, n.attempts, n.next_attempt_at) == ("delivered", 3, None)


def test_delivery_gives_up_after_the_last_attempt(hctx, receiver):
    hctx.settings = hctx.settings.replace(webhook_max_attempts=2)
    receiver.plan = [500] * 5
    job = job_with_callbacks(hctx, [receiver.url])
    runner.run_job(hctx, job.id)
    nid = int(sent_webhooks(hctx)[0])
    assert webhooks.deliver(hctx, nid).state == "retry"
    last = webhooks.deliver(hctx, nid, now=utcnow() + timedelta(seconds=5))
    assert (last.state, last.retry_in) == ("failed", None)
    assert webhooks.deliver(hctx, nid, now=utcnow() + timedelta(hours=5)).state == "skipped"
    assert len(receiver.calls) == 2
    assert notifications(hctx, job.id)[0].state == "failed"


def test_a_receiver_saying_gone_is_not_retried(hctx, receiver):
    receiver.plan = [410]
    job = job_with_callbacks(hctx, [receiver.url])
    runner.run_job(hctx, job.id)
    assert webhooks.deliver(hctx, int(sent_webhooks(hctx)[0])).state == "failed"


def test_loopback_is_refused_at_delivery_when_not_allowlisted(ctx, receiver):
    # The URL got in while loopback was allowed; the setting changed since.
    job = job_with_callbacks(ctx, [receiver.url])
    runner.run_job(ctx, job.id)
    outcome = webhooks.deliver(ctx, int(sent_webhooks(ctx)[0]))
    assert outcome.state == "failed"
    assert "blocked" in outcome.error and "loopback" in outcome.error
    assert receiver.calls == []
    [row] = webhooks.deliveries_of(ctx, job.id)
    assert (row.status_code, row.delivered) == (None, False)


def test_unreachable_receiver_is_retried(hctx):
    job = job_with_callbacks(hctx, ["http://127.0.0.1:9/nobody-listens"])
    runner.run_job(hctx, job.id)
    outcome = webhooks.deliver(hctx, int(sent_webhooks(hctx)[0]))
    assert outcome.state == "retry" and "ConnectionError" in outcome.error


def test_backoff_doubles_with_jitter_up_to_the_cap():
    rng = random.Random(7)
    for attempt in range(1, 12):
        step = min(3600, 30 * 2 ** (attempt - 1))
        delay = webhooks.retry_delay(attempt, 30, 3600, rng)
        assert step / 2 <= delay <= step
    total = sum(webhooks.retry_delay(a, 30, 3600, rng) for a in range(1, 15))
    assert total > 4 * 3600  # the default schedule keeps trying for hours


def test_sweep_resends_notifications_whose_message_was_lost(hctx, receiver):
    job = job_with_callbacks(hctx, [receiver.url])
    runner.run_job(hctx, job.id)
    nid = int(sent_webhooks(hctx)[0])
    hctx.sent.clear()
    assert webhooks.sweep(hctx) == []  # not overdue yet
    assert webhooks.sweep(hctx, now=utcnow() + timedelta(minutes=5)) == [nid]
    assert sent_webhooks(hctx) == [str(nid)]
    webhooks.deliver(hctx, nid)
    assert webhooks.sweep(hctx, now=utcnow() + timedelta(days=1)) == []


def test_expiry_is_configurable_per_kind_and_announced(hctx, receiver):
    hctx.settings = hctx.settings.replace(kind_expiry={"synthetic": 60})
    job = job_with_callbacks(hctx, [receiver.url])
    runner.run_job(hctx, job.id)
    done = jobs.get(hctx, job.id)
    assert done.expires_at - done.finished_at == timedelta(seconds=60)
    key = done.artifacts[0].key
    assert hctx.storage.stat(key) is not None
    assert cleanup.run(hctx, now=utcnow() + timedelta(seconds=61))["expired_jobs"] == 1
    expired = jobs.get(hctx, job.id)
    assert expired.status == "expired" and expired.artifacts[0].deleted_at is not None
    assert hctx.storage.stat(key) is None
    with hctx.db.session() as s:
        events = list(s.scalars(select(WebhookNotification.event).where(WebhookNotification.job_id == job.id).order_by(WebhookNotification.id)))
    assert events == ["succeeded", "expired"]
    webhooks.deliver(hctx, int(sent_webhooks(hctx)[-1]))
    body = receiver.calls[-1].json
    assert (body["status"], body["links"], body["fileSize"], body["expirationTime"]) == ("expired", None, None, None)


def test_expiry_zero_keeps_artifacts_forever(ctx):
    ctx.settings = ctx.settings.replace(kind_expiry={"synthetic": 0})
    job = jobs.submit(ctx, "synthetic", {})
    runner.run_job(ctx, job.id)
    assert jobs.get(ctx, job.id).expires_at is None
    assert cleanup.run(ctx, now=utcnow() + timedelta(days=3650))["expired_jobs"] == 0
    assert jobs.get(ctx, job.id).status == "succeeded"


def test_kind_expiry_setting_is_parsed_and_checked(make_settings):
    from exporter.errors import ConfigError

    assert make_settings(kind_expiry="export_private=86400, synthetic=0").kind_expiry == {"export_private": 86400, "synthetic": 0}
    assert make_settings().kind_expiry == {}
    for bad in ("export_private", "x=-1", "=5", "x=soon"):
        with pytest.raises(ConfigError, match="KIND_EXPIRY"):
            make_settings(kind_expiry=bad)


def test_a_huge_answer_from_the_receiver_is_read_only_up_to_the_cap(hctx, receiver):
    receiver.plan = [500]
    receiver.body_size = 64 * 1024 * 1024
    job = job_with_callbacks(hctx, [receiver.url])
    runner.run_job(hctx, job.id)
    outcome = webhooks.deliver(hctx, int(sent_webhooks(hctx)[0]))
    assert (outcome.state, outcome.status_code) == ("retry", 500)
    assert outcome.error == "HTTP 500: " + "x" * 200
    deadline = time.monotonic() + 20
    while not receiver.sent and time.monotonic() < deadline:
        time.sleep(0.05)
    # The client closed the connection after a few KiB: the server could not send the rest.
    [sent] = receiver.sent
    assert sent < 32 * 1024 * 1024


@pytest.mark.parametrize("code", [302, 307, 308])
def test_a_receiver_redirecting_elsewhere_gets_no_second_delivery(hctx, code):
    """Deliveries follow no redirect: the signed body is never re-sent to the Location (another
    port here), and the attempt is recorded as the status it got."""
    from tests.http_servers import RedirectingServer, ScenarioServer

    other = ScenarioServer().start()
    first = RedirectingServer(f"{other.url}/data.csv", code).start()
    try:
        outcome = deliver_once(hctx, first.url + "/hook")
    finally:
        first.stop()
        other.stop()
    assert (outcome.state, outcome.status_code, outcome.error) == ("retry", code, f"HTTP {code}")
    [(method, path, headers, body)] = first.seen
    assert (method, path) == ("POST", "/hook") and body and webhooks.SIGNATURE_HEADER in headers
    assert other.requests == [] and other.posts == []


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_receiver_trickling_its_answer_is_cut_off_at_the_webhook_timeout(hctx, part):
    """WEBHOOK_TIMEOUT bounds the whole call, not each read: a receiver sending its headers
    (or its error body) a little at a time is hung up on, and the attempt is retried."""
    hctx.settings = hctx.settings.replace(webhook_timeout=1)
    srv = TricklingServer(part).start()
    try:
        outcome = deliver_once(hctx, srv.url + "/hook")
    finally:
        srv.stop()
    assert (outcome.state, outcome.status_code, outcome.error) == ("retry", None, "no complete answer within 1s (WEBHOOK_TIMEOUT)")
