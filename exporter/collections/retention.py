"""How long a batch's quarantine is kept: cleanup (exporter.cleanup) deletes it COLLECTIONS_QUARANTINE_DAYS after the batch last changed.

A declined or expired batch loses its quarantined copies and its converted images; a published (or
imported) batch its converted images only: its public copies stay (a re-publication reads them), and
so do its quarantined originals. Nothing outside `quarantine/collections/` is ever deleted here.

Each batch is a compare-and-set on the (state, updated_at) cleanup read: a batch that changed since
(re-published, say) is left for the next cleanup. The marks (`originals_deleted_at`,
`converted_deleted_at`) are committed first and the objects deleted after that commit, so a failed
commit deletes nothing; a crash after it leaves objects that no row names any more
(`batches.quarantine_keys` leaves marked keys out), which cleanup's orphan pass removes.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update

from ..context import Context
from .batches import QUARANTINE
from .models import DECLINED, EXPIRED, PUBLIC_STATES, CollectionBatch, CollectionFile

log = logging.getLogger(__name__)

UNPUBLISHED = (DECLINED, EXPIRED)  # batches nothing of which went out: every quarantined object goes


def due(ctx: Context, now: datetime) -> list[tuple[int, str, datetime]]:
    """(batch id, state, updated_at as read) of batches whose quarantine is kept no longer."""
    cutoff = now - timedelta(days=ctx.settings.collections_quarantine_days)
    B = CollectionBatch
    with ctx.db.session() as s:
        return [tuple(row) for row in s.execute(
            select(B.id, B.state, B.updated_at).where(
                B.updated_at < cutoff,
                or_(
                    and_(B.state.in_(UNPUBLISHED), or_(B.originals_deleted_at.is_(None), B.converted_deleted_at.is_(None))),
                    and_(B.state.in_(PUBLIC_STATES), B.converted_deleted_at.is_(None)),
                ),
            ).order_by(B.id)
        )]


def mark(ctx: Context, batch_id: int, state: str, updated_at: datetime, now: datetime) -> list[str] | None:
    """Mark the batch's quarantine deleted if it is still as read (compare-and-set); returns the keys to delete after this commit, or None."""
    originals = state in UNPUBLISHED
    values = {"converted_deleted_at": now, **({"originals_deleted_at": now} if originals else {})}
    with ctx.db.session() as s:
        hit = s.execute(
            update(CollectionBatch).where(CollectionBatch.id == batch_id, CollectionBatch.state == state, CollectionBatch.updated_at == updated_at)
            .values(**values).execution_options(synchronize_session=False)
        ).rowcount
        if hit != 1:
            return None
        rows = s.execute(select(CollectionFile.quarantine_key, CollectionFile.converted_key).where(CollectionFile.batch_id == batch_id)).all()
    keys = [r.converted_key for r in rows if r.converted_key] + ([r.quarantine_key for r in rows if r.quarantine_key] if originals else [])
    return [k for k in keys if k.startswith(QUARANTINE)]


def run(ctx: Context, now: datetime) -> int:
    """cleanup's retention rule for collections: returns the quarantined objects deleted."""
    deleted = 0
    for batch_id, state, updated_at in due(ctx, now):
        keys = mark(ctx, batch_id, state, updated_at, now)
        if keys is None:
            log.info("collections: batch %s changed while cleaning up its quarantine; kept for the next cleanup", batch_id)
            continue
        for key in keys:
            deleted += ctx.storage.delete(key)
        log.info("collections: batch %s (%s): %d quarantined object(s) deleted after COLLECTIONS_QUARANTINE_DAYS", batch_id, state, len(keys))
    return deleted
