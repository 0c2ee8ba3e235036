"""Telling a project's owner how a batch stands: signed webhooks and e-mail, both through an outbox.

`notify(ctx, session, batch, event, ...)` writes, in the caller's transaction (the change it tells
of commits with it, or neither does), one `collection_emails` row to the owner (when SMTP_HOST is
set) and one `webhook_notifications` row for the project's callback URL (the engine's durable,
signed, retried delivery: `exporter.webhooks`), and returns what to send after the commit.
E-mails are sent by the task `exporter.send_collection_email` over SMTP (SMTP_* settings), each
attempt claimed with a compare-and-set, retried with backoff, and re-sent by the poll's sweep when
a message was lost: a commit that fails sends nothing; a commit that succeeds is told once.

`tell_owner(ctx, session, project, event, ...)` does the same for an event of the project
itself (grant-revoked), by e-mail only.

Events: retrieved (the files are in quarantine; the owner may remove them from the source),
capped (files wait for a later batch until data rights are approved), awaiting (waiting for
approval), approved, declined (with the reason), expired, published (with the manifest URL),
imported (Zooniverse's counts), failed.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from .. import webhooks
from ..context import Context
from ..db import utcnow
from ..models import Job
from ..retrying import retry_delay
from .models import PUBLISH, CollectionBatch, CollectionEmail, CollectionProject
from .views import batch_view

log = logging.getLogger(__name__)

TASK = "exporter.send_collection_email"
QUEUE = "collections"

SUBJECTS = {
    "retrieved": "{p}: batch {b} retrieved ({n} files); you may remove them from your collection",
    "capped": "{p}: {w} files wait for a later batch (data rights not approved yet)",
    "awaiting": "{p}: batch {b} is waiting for approval",
    "approved": "{p}: batch {b} was approved",
    "declined": "{p}: batch {b} was declined",
    "expired": "{p}: the approval request of batch {b} expired",
    "published": "{p}: batch {b} is published",
    "imported": "{p}: batch {b} was imported into Zooniverse",
    "failed": "{p}: batch {b} failed",
}
PROJECT_SUBJECTS = {  # events of a project rather than of a batch: e-mail only (webhooks belong to jobs)
    "grant-revoked": "{p}: Exporter's grant to read your collection was revoked",
}


def _body(p: CollectionProject, b: CollectionBatch, event: str, detail: dict[str, Any]) -> str:
    lines = [f"Hello {p.owner_name or p.owner_email},", ""]
    if event == "retrieved":
        lines.append(f"Exporter copied {b.retrieved} file(s) of your collection {p.source} into its quarantine (with checksums), batch {b.id}.")
        lines.append("They are kept here now: you may remove them from your collection.")
        if b.refused:
            lines.append(f"{b.refused} file(s) cannot be sent to Zooniverse:")
            lines += [f"  - {name}: {reason}" for name, reason in detail.get("refusals", [])]
    elif event == "capped":
        lines.append(f"Batch {b.id} holds {b.files_total} file(s), at most {b.cap} while the project's data rights are not approved; "
                     f"{b.waiting} more wait in your collection and go out in later batches. Once the data rights are approved a batch holds up to {detail.get('cap_after')} files.")
    elif event == "awaiting":
        lines.append(f"Batch {b.id} ({b.converted} image(s) converted, {b.refused} refused) waits for an approver's decision until {_iso(b.approval_expires_at)}. Nothing of it is public before then.")
    elif event == "approved":
        lines.append(f"Batch {b.id} was approved by {detail.get('by')}" + (f": {detail['note']}" if detail.get("note") else ".") + " It is being published.")
    elif event == "declined":
        lines.append(f"Batch {b.id} was declined by {detail.get('by')}. The reason: {detail.get('note')}")
        lines.append("Nothing of it was published.")
    elif event == "expired":
        lines.append(f"Nobody decided on batch {b.id} before {_iso(b.approval_expires_at)}; its approval request expired and nothing of it was published.")
    elif event == "published":
        lines.append(f"Batch {b.id} is published. Its Zooniverse manifest: {b.manifest_url}")
    elif event == "imported":
        lines.append(f"Zooniverse imported batch {b.id} into subject set {p.subject_set_id}: {b.imported_count} of {b.manifest_count} row(s), {b.failed_count or 0} failed.")
    elif event == "failed":
        lines.append(f"Batch {b.id} could not go on: {detail.get('error') or b.error}")
    lines += ["", f"Project {p.name}, batch {b.id}: {b.state}.", "-- Exporter"]
    return "\n".join(lines) + "\n"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def email_on(ctx: Context) -> bool:
    return bool(ctx.settings.smtp_host)


def _email(ctx: Context, session: Session, p: CollectionProject, batch: CollectionBatch | None, event: str, job_id: str | None, subject: str, body: str) -> int | None:
    """Write the owner's e-mail for `event` unless SMTP is off or this (batch, event, job) was written already; returns its id."""
    if not email_on(ctx):
        return None
    batch_id = batch.id if batch is not None else None
    if batch_id is not None and session.scalars(select(CollectionEmail.id).where(
        CollectionEmail.project_id == p.id, CollectionEmail.batch_id == batch_id, CollectionEmail.event == event, CollectionEmail.job_id == job_id,
    )).first() is not None:
        return None
    row = CollectionEmail(project_id=p.id, batch_id=batch_id, job_id=job_id, event=event, recipient=p.owner_email, subject=subject[:250], body=body,
                          state="pending", attempts=0, next_attempt_at=utcnow())
    session.add(row)
    session.flush()
    return row.id


def notify(ctx: Context, session: Session, batch: CollectionBatch, event: str, job_id: str | None = None, **detail: Any) -> Callable[[], None] | None:
    """Write the owner's e-mail and webhook for `event` in `session`; returns what to send after the commit.

    An event is told once per (batch, event, job): `job_id` is the job the event belongs to (the
    publication that published, the job that failed; the batch's collect job by default), so a
    batch published again, or failing again, is told again, while a second call for the same job
    writes nothing."""
    p = session.get(CollectionProject, batch.project_id)
    session.flush()
    job_id = job_id or batch.job_id
    subject = SUBJECTS[event].format(p=p.name, b=batch.id, n=batch.retrieved, w=batch.waiting)
    email_id = _email(ctx, session, p, batch, event, job_id, subject, _body(p, batch, event, detail))
    hook_ids: list[int] = []
    if p.callback_url and job_id:
        webhooks.add_callbacks(session, job_id, [p.callback_url])
        hook_ids = webhooks.write_notifications(session, job_id, event, events=EVENTS)
    if email_id is None and not hook_ids:
        return None

    def send() -> None:
        if email_id is not None:
            enqueue(ctx, email_id)
        webhooks.send_notifications(ctx, job_id, event, hook_ids)

    return send


def tell_owner(ctx: Context, session: Session, p: CollectionProject, event: str, **detail: Any) -> Callable[[], None] | None:
    """Write the owner's e-mail for an event of the project itself (PROJECT_SUBJECTS); call once per event. Returns what to send after the commit."""
    lines = [f"Hello {p.owner_name or p.owner_email},", ""]
    if event == "grant-revoked":
        lines.append(f"The grant that let Exporter read your collection {p.source} was revoked by {detail.get('by')}.")
        lines.append("Exporter reads nothing more from it: no poll reads it, and a batch being retrieved stops at its next file.")
        lines.append("Batches already retrieved stay as they are. To give Exporter access again, ask an operator for a new grant.")
    lines += ["", f"Project {p.name}.", "-- Exporter"]
    email_id = _email(ctx, session, p, None, event, None, PROJECT_SUBJECTS[event].format(p=p.name), "\n".join(lines) + "\n")
    return (lambda: enqueue(ctx, email_id)) if email_id is not None else None


EVENTS = tuple(SUBJECTS)


def after_all(actions: list[Callable[[], None] | None]) -> Callable[[], None] | None:
    """One post-commit action for the ON_FINAL hooks that run several (None when there is none)."""
    todo = [a for a in actions if a is not None]
    if not todo:
        return None

    def run() -> None:
        for action in todo:
            action()

    return run


def enqueue(ctx: Context, email_id: int) -> None:
    try:
        ctx.enqueue(TASK, str(email_id), QUEUE)
    except Exception:
        log.exception("collection e-mail %s: enqueue failed; the sweep will send it", email_id)


def webhook_payload(ctx: Context, job: Job, status: str) -> dict[str, Any]:
    """What the project's callback URL receives (the family's kinds' callback_payload): the event, the job it
    belongs to, the batch as the API shows it, and for a publication the manifest URL it published."""
    with ctx.db.session() as s:
        b = s.get(CollectionBatch, (job.params or {}).get("batch") or 0)
        view = batch_view(ctx, s, b, files=False) if b is not None else None
    out = {"event": webhooks.event_name(job.kind, status), "jobId": job.id, "batch": view}
    if job.kind == PUBLISH and status == "published":
        out["manifestURL"] = (job.result or {}).get("manifest_url")
    return out


# --- sending -------------------------------------------------------------------------------


def _due(e: CollectionEmail, now: datetime) -> bool:
    return e.state == "pending" and (e.next_attempt_at is None or e.next_attempt_at <= now + timedelta(seconds=1))


def send_email(ctx: Context, email_id: int, now: datetime | None = None) -> webhooks.Outcome:
    """One attempt at a due e-mail (claimed with a compare-and-set), recorded; says whether and when to retry."""
    cfg = ctx.settings
    now = now or utcnow()
    with ctx.db.session() as s:
        e = s.get(CollectionEmail, email_id)
        if e is None or not _due(e, now):
            return webhooks.Outcome("skipped")
        attempt = e.attempts + 1
        lease = now + timedelta(seconds=cfg.smtp_timeout + 60)
        got = s.execute(
            update(CollectionEmail).where(CollectionEmail.id == e.id, CollectionEmail.attempts == e.attempts, CollectionEmail.state == "pending").values(attempts=attempt, next_attempt_at=lease)
        ).rowcount
        if got != 1:
            return webhooks.Outcome("skipped")
        message = _message(cfg, e)
    error, permanent = _smtp_send(cfg, message)
    finished = error is None or permanent or attempt >= cfg.email_max_attempts
    retry_in = None if finished else retry_delay(attempt, cfg.webhook_retry_base, cfg.webhook_retry_cap)
    state = "sent" if error is None else ("failed" if finished else "pending")
    done = utcnow()
    with ctx.db.session() as s:
        s.execute(
            update(CollectionEmail).where(CollectionEmail.id == email_id).values(
                state=state, last_error=error, next_attempt_at=done + timedelta(seconds=retry_in) if retry_in is not None else None, sent_at=done if error is None else None,
            )
        )
    if error is None:
        log.info("collection e-mail %s (%s) sent to %s on attempt %d", email_id, message["Subject"], message["To"], attempt)
    else:
        log.warning("collection e-mail %s attempt %d failed: %s%s", email_id, attempt, error, "" if retry_in is None else f"; retry in {retry_in:.0f}s")
    return webhooks.Outcome(state if state != "pending" else "retry", retry_in, None, error)


def _message(cfg, e: CollectionEmail) -> EmailMessage:
    m = EmailMessage()
    m["From"] = cfg.smtp_from
    m["To"] = e.recipient
    m["Subject"] = e.subject
    m["Date"] = formatdate(localtime=False)
    m["Message-ID"] = f"<collections-{e.id}-{e.event}@{cfg.smtp_from.rsplit('@', 1)[-1]}>"  # one id for every attempt: receivers drop repeats
    m["X-Exporter-Event"] = f"collection.{e.event}"
    m.set_content(e.body)
    return m


def _smtp_send(cfg, message: EmailMessage) -> tuple[str | None, bool]:
    """(error or None, whether the failure is permanent: a 5xx refusal of the recipient or the message)."""
    try:
        with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.smtp_timeout) as smtp:
            if cfg.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if cfg.smtp_user:
                smtp.login(cfg.smtp_user, cfg.smtp_password)
            smtp.send_message(message)
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
        code = getattr(exc, "smtp_code", None) or (next(iter(exc.recipients.values()))[0] if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients else None)
        return f"{type(exc).__name__}: {exc}"[:1000], bool(code and 500 <= int(code) < 600)
    except (smtplib.SMTPException, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"[:1000], False
    return None, False


def sweep(ctx: Context, now: datetime | None = None, grace_seconds: float = 60) -> list[int]:
    """Re-enqueue pending e-mails overdue by more than `grace_seconds` (a lost message)."""
    now = now or utcnow()
    with ctx.db.session() as s:
        ids = list(s.scalars(select(CollectionEmail.id).where(
            CollectionEmail.state == "pending",
            or_(CollectionEmail.next_attempt_at.is_(None), CollectionEmail.next_attempt_at < now - timedelta(seconds=grace_seconds)),
        )))
    for eid in ids:
        enqueue(ctx, eid)
    if ids:
        log.warning("collection e-mail sweep: re-enqueued %d overdue e-mail(s)", len(ids))
    return ids


def emails_of(ctx: Context, batch_id: int) -> list[CollectionEmail]:
    with ctx.db.session() as s:
        return list(s.scalars(select(CollectionEmail).where(CollectionEmail.batch_id == batch_id).order_by(CollectionEmail.id)))
