"""Webhooks: when a job ends, POST its outcome to every callback URL, signed, retried for hours.

A job's callback URLs live in `job_callbacks`. When the job reaches a final status,
`on_final` (a `jobs.ON_FINAL` hook) writes one `webhook_notifications` row per callback and
status in the same transaction as that status (the outbox); after the commit the Celery
task `exporter.deliver_webhook` is enqueued with its id. Each attempt is a `webhook_deliveries` row. A failed attempt sets
`next_attempt_at` (exponential backoff with jitter) and the task retries itself; a sweep
re-enqueues notifications whose retry message was lost, so the database, not the broker,
keeps the work.

Every call carries `X-Exporter-Timestamp` (unix seconds) and `X-Exporter-Signature`
(`sha256=` + hex HMAC-SHA256 of `<timestamp>.<body>` keyed with WEBHOOK_SECRET, or
SECRET_KEY); receivers check it with `verify_signature`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from . import netsafety
from .access import download_links
from .context import Context
from .crypto import same
from .db import Base, UTCDateTime, utcnow
from .errors import InvalidRequest
from .kinds import load_all
from .models import FINAL_STATUSES, Job
from .retrying import retry_delay
from .visibility import API_STATUS, file_size

log = logging.getLogger(__name__)

TASK = "exporter.deliver_webhook"
QUEUE = "webhooks"
FIELD = "callbackURLs"
MAX_URL_LENGTH = 2048
MAX_CALLBACKS = 20
SIGNATURE_HEADER = "X-Exporter-Signature"
TIMESTAMP_HEADER = "X-Exporter-Timestamp"
USER_AGENT = "Exporter-Webhooks/1"


class JobCallback(Base):
    """A URL told when the job ends."""

    __tablename__ = "job_callbacks"
    __table_args__ = (UniqueConstraint("job_id", "url"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(MAX_URL_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookNotification(Base):
    """One final status to announce to one callback URL, until delivered or given up."""

    __tablename__ = "webhook_notifications"
    __table_args__ = (UniqueConstraint("callback_id", "event"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    callback_id: Mapped[int] = mapped_column(ForeignKey("job_callbacks.id", ondelete="CASCADE"))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(MAX_URL_LENGTH))
    event: Mapped[str] = mapped_column(String(16))  # the job status announced
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class WebhookDelivery(Base):
    """One attempt to deliver a notification, kept for the job page."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("webhook_notifications.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(MAX_URL_LENGTH))
    event: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": redact(self.url),
            "event": self.event,
            "attempt": self.attempt,
            "statusCode": self.status_code,
            "error": self.error,
            "at": _iso(self.at),
            "nextAttemptAt": _iso(self.next_attempt_at),
            "delivered": self.delivered,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def redact(url: str) -> str:
    """The URL without user:password, for pages and logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


# --- registering callbacks -------------------------------------------------------------


def validate_callback_url(ctx: Context, url: Any) -> str:
    """A callback URL we may call, or InvalidRequest(field="callbackURLs") saying why not."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest("each callback URL must be a non-empty string", field=FIELD)
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(f"callback URL is longer than {MAX_URL_LENGTH} characters", field=FIELD)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"callback URL is malformed: {exc}", field=FIELD) from None
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest(f"callback URL {url[:200]!r} must be http or https (start with http:// or https://)", field=FIELD)
    if not parts.hostname:
        raise InvalidRequest("callback URL has no host", field=FIELD)
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidRequest("callback URL contains spaces or control characters", field=FIELD)
    _check_address(ctx, parts.hostname, port or (443 if parts.scheme == "https" else 80))
    return url


def validate_callback_urls(ctx: Context, urls: Any) -> list[str]:
    """A list of callback URLs, each validated, duplicates dropped."""
    if urls is None:
        return []
    if not isinstance(urls, list):
        raise InvalidRequest("callbackURLs must be a list of URLs", field=FIELD)
    if len(urls) > MAX_CALLBACKS:
        raise InvalidRequest(f"at most {MAX_CALLBACKS} callback URLs per job", field=FIELD)
    return list(dict.fromkeys(validate_callback_url(ctx, u) for u in urls))


def add_callbacks(session: Session, job_id: str, urls: Iterable[str]) -> list[JobCallback]:
    """Attach callback URLs (already validated) to a job; ones it has are skipped. Returns the new ones.

    If the job has already ended, call `job_finished(ctx, job_id, status)` after the commit
    to tell the new URLs at once (URLs already told are not told twice).
    """
    have = set(session.scalars(select(JobCallback.url).where(JobCallback.job_id == job_id)))
    added = []
    for url in dict.fromkeys(urls):
        if url not in have:
            cb = JobCallback(job_id=job_id, url=url)
            session.add(cb)
            added.append(cb)
            have.add(url)
    session.flush()
    return added


def attach(ctx: Context, session: Session, job_id: str, urls: Iterable[str]) -> Callable[[], None] | None:
    """Attach callback URLs to an existing job in the caller's transaction; returns what to run after the commit.

    The job's row is locked first (FOR UPDATE; on SQLite the caller already holds the write
    lock), so a final status written at the same moment is ordered with this: either its
    transaction comes after and its outbox rows include these URLs, or it came first and the
    status read here is final, and this transaction writes their notifications itself. A URL
    attached while the job ends is never left untold.
    """
    status = session.scalar(select(Job.status).where(Job.id == job_id).with_for_update())
    add_callbacks(session, job_id, urls)
    ids = write_notifications(session, job_id, status) if status in FINAL_STATUSES else []
    return (lambda: send_notifications(ctx, job_id, status, ids)) if ids else None


def callbacks_of(ctx: Context, job_id: str) -> list[str]:
    with ctx.db.session() as s:
        return list(s.scalars(select(JobCallback.url).where(JobCallback.job_id == job_id).order_by(JobCallback.id)))


# --- addresses ---------------------------------------------------------------------------


def _check_address(ctx: Context, host: str, port: int) -> None:
    """Refuse a host that is, or resolves to, an address the archiver's rules refuse."""
    allow = ctx.settings.webhook_allow_networks
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host.strip("[]"), port, 0, socket.SOCK_STREAM)}
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidRequest(f"callback URL host {host!r} does not resolve: {exc}", field=FIELD) from None
    try:
        for address in sorted(addresses):
            netsafety.check_address(address, allow, host=host)
    except netsafety.BlockedAddress as exc:
        raise InvalidRequest(f"callback URL not allowed: {exc} (see EXPORTER_WEBHOOK_ALLOW_NETWORKS)", field=FIELD) from None


def _session(ctx: Context, on_socket=None) -> requests.Session:
    return netsafety.safe_session(ctx.settings.webhook_allow_networks, user_agent=USER_AGENT, on_socket=on_socket)


# --- when a job ends ---------------------------------------------------------------------


def write_notifications(session: Session, job_id: str, status: str, events: Iterable[str] = ()) -> list[int]:
    """In the caller's transaction: a notification row for each callback of the job not yet told `status`.

    `status` is a final status of the job, or one of `events` (a family's own steps, such as a
    collection batch's `approved`; the kind's callback_payload says what they carry)."""
    if status not in FINAL_STATUSES and status not in events:
        return []
    now = utcnow()
    callbacks = session.scalars(select(JobCallback).where(JobCallback.job_id == job_id).order_by(JobCallback.id)).all()
    if not callbacks:
        return []
    told = set(session.scalars(select(WebhookNotification.callback_id).where(WebhookNotification.job_id == job_id, WebhookNotification.event == status)))
    created = [
        WebhookNotification(callback_id=cb.id, job_id=job_id, url=cb.url, event=status, state="pending", attempts=0, next_attempt_at=now) for cb in callbacks if cb.id not in told
    ]
    session.add_all(created)
    session.flush()
    return [n.id for n in created]


def send_notifications(ctx: Context, job_id: str, status: str, ids: list[int]) -> None:
    """After the commit: one delivery message per notification (the sweep re-sends lost ones)."""
    for nid in ids:
        _enqueue(ctx, nid)
    if ids:
        log.info("job %s: %d webhook(s) for %s enqueued", job_id, len(ids), status)


def on_final(ctx: Context, session: Session, job_id: str, status: str) -> Callable[[], None] | None:
    """The jobs.ON_FINAL hook: write the outbox rows now, send their messages after the commit."""
    ids = write_notifications(session, job_id, status)
    return (lambda: send_notifications(ctx, job_id, status, ids)) if ids else None


def job_finished(ctx: Context, job_id: str, status: str) -> list[int]:
    """Write (in a transaction of its own) and enqueue the notifications of a job that has already ended."""
    try:
        with ctx.db.session() as s:
            ids = write_notifications(s, job_id, status)
    except IntegrityError:
        log.info("job %s: %s webhooks already written by another process", job_id, status)
        return []
    send_notifications(ctx, job_id, status, ids)
    return ids


def _enqueue(ctx: Context, notification_id: int) -> None:
    try:
        ctx.enqueue(TASK, str(notification_id), QUEUE)
    except Exception:
        log.exception("webhook %s: enqueue failed; the sweep will send it", notification_id)


# --- delivering --------------------------------------------------------------------------


def secret(ctx: Context) -> str:
    return ctx.settings.webhook_secret or ctx.settings.secret_key


def sign(key: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(key: str, timestamp: str, body: bytes, signature: str, tolerance: float = 300, now: float | None = None) -> bool:
    """True if `signature` is ours for this timestamp and body, and the timestamp is recent."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except (TypeError, ValueError):
        return False
    return age <= tolerance and same(sign(key, timestamp, body), signature)


def api_status(status: str) -> str:
    """The job status as the JSON API names it (succeeded is "completed")."""
    return API_STATUS.get(status, status)


def event_name(kind: str, event: str) -> str:
    """The event as the X-Exporter-Event header names it: `job.<API status>`, or `<namespace>.<event>`
    for a kind whose events are its family's own steps (JobKind.event_namespace)."""
    spec = load_all().get(kind)
    namespace = spec.event_namespace if spec is not None else None
    return f"{namespace}.{event}" if namespace else f"job.{api_status(event)}"


def payload(ctx: Context, job: Job, status: str) -> dict[str, Any]:
    """What a callback URL receives: the outcome as the API shows it, with fresh signed download links.

    Call inside the session that loaded `job` (its artifacts are read).
    """
    spec = load_all().get(job.kind)
    if spec is not None and spec.callback_payload is not None:  # a shape of its own (tiles: MapColonies')
        return spec.callback_payload(ctx, job, status)
    links = download_links(ctx, job) if status == "succeeded" and job.status == "succeeded" else None
    return {
        "jobId": job.id,
        "status": api_status(status),
        "description": job.description,
        "links": links,
        "fileSize": file_size(job) if links is not None else None,
        "expirationTime": _iso(job.expires_at) if status == "succeeded" else None,
        "errorReason": job.error if status == "failed" else None,
    }


@dataclass
class Outcome:
    state: str  # delivered, retry, failed (gave up), skipped (not due, or already done)
    retry_in: float | None = None
    status_code: int | None = None
    error: str | None = None


def _due(n: WebhookNotification, now: datetime) -> bool:
    return n.state == "pending" and (n.next_attempt_at is None or n.next_attempt_at <= now + timedelta(seconds=1))


def deliver(ctx: Context, notification_id: int, now: datetime | None = None) -> Outcome:
    """Make one attempt at a due notification and record it; says whether and when to retry."""
    cfg = ctx.settings
    now = now or utcnow()
    lease = now + timedelta(seconds=cfg.webhook_timeout + 60)
    with ctx.db.session() as s:
        n = s.get(WebhookNotification, notification_id)
        if n is None or not _due(n, now):
            return Outcome("skipped")
        attempt = n.attempts + 1
        # Claim this attempt (compare-and-set), so a duplicate message does not send it twice.
        res = s.execute(
            update(WebhookNotification)
            .where(WebhookNotification.id == n.id, WebhookNotification.attempts == n.attempts, WebhookNotification.state == "pending")
            .values(attempts=attempt, next_attempt_at=lease)
        )
        if res.rowcount != 1:
            return Outcome("skipped")
        job = s.get(Job, n.job_id)
        body = json.dumps(payload(ctx, job, n.event), separators=(",", ":")).encode()
        url, event, job_id, header_event = n.url, n.event, n.job_id, event_name(job.kind, n.event)
    code, error, permanent = _post(ctx, url, body, header_event, notification_id, attempt)
    delivered = error is None
    finished = delivered or permanent or attempt >= cfg.webhook_max_attempts
    retry_in = None if finished else retry_delay(attempt, cfg.webhook_retry_base, cfg.webhook_retry_cap)
    done_at = utcnow()
    next_at = done_at + timedelta(seconds=retry_in) if retry_in is not None else None
    state = "delivered" if delivered else ("failed" if finished else "pending")
    with ctx.db.session() as s:
        s.add(WebhookDelivery(notification_id=notification_id, job_id=job_id, url=url, event=event, attempt=attempt, status_code=code, error=error, at=done_at, next_attempt_at=next_at, delivered=delivered))
        s.execute(
            update(WebhookNotification)
            .where(WebhookNotification.id == notification_id)
            .values(state=state, next_attempt_at=next_at, last_error=error, finished_at=done_at if finished else None)
        )
    if delivered:
        log.info("job %s: webhook %s (%s) delivered to %s on attempt %d", job_id, notification_id, event, redact(url), attempt)
    elif finished:
        log.warning("job %s: webhook %s (%s) to %s given up after attempt %d: %s", job_id, notification_id, event, redact(url), attempt, error)
    else:
        log.info("job %s: webhook %s attempt %d to %s failed (%s); retry in %.0fs", job_id, notification_id, attempt, redact(url), error, retry_in)
    return Outcome(state if state != "pending" else "retry", retry_in, code, error)


RESPONSE_READ_CAP = 4096  # bytes of a receiver's answer we read at most; the rest is never fetched


def _read_capped(resp: requests.Response, cap: int) -> bytes:
    """At most `cap` bytes of a streamed response body."""
    out = bytearray()
    for chunk in resp.iter_content(chunk_size=1024):
        out += chunk
        if len(out) >= cap:
            break
    return bytes(out[:cap])


def _post(ctx: Context, url: str, body: bytes, event: str, notification_id: int, attempt: int) -> tuple[int | None, str | None, bool]:
    """POST the body (`event` as event_name gives it); returns (status code, error or None, whether the failure is permanent)."""
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret(ctx), timestamp, body),
        "X-Exporter-Event": event,
        "X-Exporter-Delivery": str(notification_id),
        "X-Exporter-Attempt": str(attempt),
    }
    limit = ctx.settings.webhook_timeout
    try:  # the whole call within WEBHOOK_TIMEOUT, however slowly the receiver trickles its answer
        with netsafety.Deadline(limit) as deadline, _session(ctx, on_socket=deadline.watch) as http:
            resp = http.post(url, data=body, headers=headers, timeout=limit, allow_redirects=False, stream=True)
            try:
                code = resp.status_code
                text = _read_capped(resp, RESPONSE_READ_CAP).decode("utf-8", "replace")[:200] if code >= 300 else ""
            finally:
                resp.close()
    except netsafety.BlockedAddress as exc:
        return None, f"blocked: {exc}", True
    except requests.RequestException as exc:
        if deadline.expired:
            return None, f"no complete answer within {limit:g}s (WEBHOOK_TIMEOUT)", False
        return None, f"{type(exc).__name__}: {exc}"[:1000], False
    if deadline.expired:  # a connection cut while headers arrive reads as their end: not an answer
        return None, f"no complete answer within {limit:g}s (WEBHOOK_TIMEOUT)", False
    if 200 <= code < 300:
        return code, None, False
    # 410 Gone: the receiver says it will never want this; anything else may get better.
    return code, f"HTTP {code}" + (f": {text.strip()}" if text.strip() else ""), code == 410


def sweep(ctx: Context, now: datetime | None = None, grace_seconds: float = 60) -> list[int]:
    """Re-enqueue pending notifications overdue by more than `grace_seconds` (a lost message)."""
    now = now or utcnow()
    with ctx.db.session() as s:
        ids = list(
            s.scalars(
                select(WebhookNotification.id).where(
                    WebhookNotification.state == "pending",
                    or_(WebhookNotification.next_attempt_at.is_(None), WebhookNotification.next_attempt_at < now - timedelta(seconds=grace_seconds)),
                )
            )
        )
    for nid in ids:
        _enqueue(ctx, nid)
    if ids:
        log.warning("webhook sweep: re-enqueued %d overdue notification(s)", len(ids))
    return ids


def deliveries_of(ctx: Context, job_id: str) -> list[WebhookDelivery]:
    with ctx.db.session() as s:
        return list(s.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.id)))


def notifications_of(ctx: Context, job_id: str) -> list[WebhookNotification]:
    with ctx.db.session() as s:
        return list(s.scalars(select(WebhookNotification).where(WebhookNotification.job_id == job_id).order_by(WebhookNotification.id)))
