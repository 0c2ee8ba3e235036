"""The family's jobs.ON_FINAL hook: a collections job's end moves its batch on, in the transaction that ends the job."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..context import Context
from ..models import Job
from . import batches, panoptes, publication
from .models import COLLECT, IMPORT, PUBLISH


def on_final(ctx: Context, session: Session, job_id: str, status: str) -> Callable[[], None] | None:
    kind = session.scalar(select(Job.kind).where(Job.id == job_id))
    if kind == COLLECT:
        return batches.on_collect_final(ctx, session, job_id, status)
    if kind == PUBLISH:
        return publication.on_publish_final(ctx, session, job_id, status, kind)
    if kind == IMPORT:
        return panoptes.on_import_final(ctx, session, job_id, status)
    return None
