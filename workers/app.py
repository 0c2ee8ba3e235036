"""The Celery app. Importing it also tells exporter/ how to enqueue jobs in this process."""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import setup_logging, worker_process_init

from exporter.config import require_production_secret
from exporter.context import get_context
from exporter.logs import configure_logging

celery_app = Celery("exporter", include=["workers.tasks"])
celery_app.config_from_object("celeryconfig")


def send(task: str, job_id: str, queue: str) -> None:
    celery_app.send_task(task, args=[job_id], queue=queue)


def install_dispatcher() -> None:
    from .broker import inspect_held, probe_for

    require_production_secret()
    ctx = get_context()
    ctx.enqueue = send
    ctx.queued_ids = probe_for(celery_app.conf.broker_url or "", celery_app.conf.broker_transport_options or {}, inspect_held(celery_app))


install_dispatcher()


@setup_logging.connect
def _logging(**_kwargs) -> None:
    configure_logging(get_context().settings.log_level)


@worker_process_init.connect
def _after_fork(**_kwargs) -> None:
    # Connections opened before the fork must not be shared with the parent.
    ctx = get_context()
    ctx.close()
    ctx.__dict__.pop("db", None)
    logging.getLogger(__name__).debug("worker process ready")
