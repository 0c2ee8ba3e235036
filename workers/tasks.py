"""Thin Celery tasks: each loads the job by id and calls exporter/. One task per job kind."""

from __future__ import annotations

import logging

from celery import Task

import exporter.collections.convert  # noqa: F401  (astropy, numpy, Pillow: loaded before the prefork pool forks, shared by its children)
from exporter import jobs, runner
from exporter.context import get_context
from exporter.errors import TransientError
from exporter.kinds import JobKind, load_all

from .app import celery_app

log = logging.getLogger(__name__)

MAX_TRANSIENT_RETRIES = 5


class JobTask(Task):
    """Runs one job by id; a TransientError sends it back to the queue with Celery's own
    backoff (autoretry_for: a random wait up to 10 s * 2**retries, at most 600 s), and after
    MAX_TRANSIENT_RETRIES the job is failed saying why."""

    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    autoretry_for = (TransientError,)
    max_retries = MAX_TRANSIENT_RETRIES
    retry_backoff = 10
    retry_backoff_max = 600
    retry_jitter = True

    def run_job(self, job_id: str) -> str:
        ctx = get_context()
        try:
            return runner.run_job(ctx, job_id)
        except TransientError as exc:
            if self.request.retries >= MAX_TRANSIENT_RETRIES:
                jobs.fail(ctx, job_id, None, f"gave up after {self.request.retries + 1} transient errors: {exc}")
                return "failed"
            raise


def _register(kind: JobKind) -> None:
    def task(self: JobTask, job_id: str) -> str:
        return self.run_job(job_id)

    task.__name__ = kind.task.split(".")[-1]
    task.__doc__ = f"Run a {kind.name} job: {kind.description}"
    celery_app.task(name=kind.task, bind=True, base=JobTask, queue=kind.queue)(task)


for _kind in load_all().values():
    _register(_kind)


@celery_app.task(name="exporter.reap", ignore_result=True)
def reap() -> dict:
    """Re-enqueue jobs whose worker died or whose message was lost."""
    from exporter import reaper

    return reaper.reap(get_context())


@celery_app.task(name="exporter.cleanup", ignore_result=True)
def cleanup() -> dict:
    """Delete expired artifacts and leftovers of interrupted writes."""
    from exporter import cleanup as clean

    return clean.run(get_context())


@celery_app.task(name="exporter.deliver_webhook", bind=True, queue="webhooks", ignore_result=True, acks_late=True)
def deliver_webhook(self, notification_id: str) -> str:
    """POST a job's final status to one callback URL; retried with backoff and jitter while it fails."""
    from exporter import webhooks

    outcome = webhooks.deliver(get_context(), int(notification_id))
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in, max_retries=None)
    return outcome.state


@celery_app.task(name="exporter.webhook_sweep", ignore_result=True)
def webhook_sweep() -> list:
    """Re-enqueue webhooks whose retry message was lost."""
    from exporter import webhooks

    return webhooks.sweep(get_context())


@celery_app.task(name="exporter.export_public_nightly", ignore_result=True)
def export_public_nightly() -> dict:
    """Submit a public export for every registration agency (celery beat, nightly)."""
    from exporter.raids.export import submit_public_exports

    ctx = get_context()
    return {j.params["agency"]: j.id for j in submit_public_exports(ctx, ctx.settings.export_nightly_mode, requested_by="beat")}


@celery_app.task(name="exporter.archive_resource", queue="archive", ignore_result=True, acks_late=True)
def archive_resource(resource_id: str) -> dict:
    """Check or download one archive resource and record the outcome (archival + task_status)."""
    from exporter.archiver.archive import archive_resource as archive

    record = archive(get_context(), resource_id, full_record=False)
    return {"resource_id": resource_id, "outcome": record.get("outcome")}


@celery_app.task(name="exporter.run_part", ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def run_part(part_id: str) -> str:
    """Do one part of a fanned-out job (sent on the job kind's queue); the last part finishes the job."""
    from exporter import parts

    return parts.run_part(get_context(), int(part_id))


@celery_app.task(name="exporter.resweep_portals", ignore_result=True)
def resweep_portals() -> dict:
    """A sweep job per registered portal, and due ad-hoc resources to the archive queue."""
    from exporter.archiver.sweep import resweep

    return resweep(get_context())


@celery_app.task(name="exporter.prune_archives", ignore_result=True)
def prune_archives() -> dict:
    """Delete stored copies of gone resources and versions beyond the newest K."""
    from exporter.archiver.prune import prune

    return prune(get_context())


@celery_app.task(name="exporter.search_refresh", ignore_result=True)
def search_refresh() -> dict:
    """Bring the public search index up to date (celery beat); reconciles when one is due."""
    from exporter.discovery.index import scheduled_refresh

    return scheduled_refresh(get_context())


@celery_app.task(name="exporter.collections_poll", ignore_result=True)
def collections_poll() -> dict:
    """Poll every active collection's source for new files (celery beat); expire undecided batches; re-send lost e-mails."""
    from exporter.collections.batches import scheduled

    return scheduled(get_context())


@celery_app.task(name="exporter.send_collection_email", bind=True, queue="collections", ignore_result=True, acks_late=True)
def send_collection_email(self, email_id: str) -> str:
    """Send one e-mail to a collection's owner over SMTP; retried with backoff and jitter while it fails."""
    from exporter.collections.notify import send_email

    outcome = send_email(get_context(), int(email_id))
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in, max_retries=None)
    return outcome.state
