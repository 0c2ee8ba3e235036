"""Objects at final keys that no row names, and cleanup's removal of them.

A run publishes by moving objects to keys of its own and then recording them in one
transaction; a crash (or a lost claim whose clean-up failed) in between leaves objects that
no row names. No reader finds them (every download, public URL and manifest starts from a
row), and cleanup deletes them once they are older than ORPHAN_GRACE_SECONDS: a younger
object may be one whose row is being committed right now.

Each area registers the key prefixes it owns with a function that says which of a batch of
keys its rows still name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from itertools import islice

from sqlalchemy import select
from sqlalchemy.orm import Session

from .context import Context
from .kinds import load_all
from .models import Artifact

log = logging.getLogger(__name__)

Named = Callable[[Session, list[str]], set[str]]  # the keys of the batch that a live row names

BATCH = 500
_owners: dict[str, Named] = {}


def register(prefix: str, named: Named) -> None:
    """Declare that the objects under `prefix` are named by rows `named` finds."""
    if not prefix.endswith("/"):
        raise ValueError(f"an owned prefix ends with '/': {prefix!r}")
    _owners[prefix] = named


def owners() -> dict[str, Named]:
    load_all()  # the families register their prefixes when their kinds load
    return dict(_owners)


def artifact_keys(session: Session, keys: list[str]) -> set[str]:
    """Keys named by an artifact row that is not deleted (the job's own published objects)."""
    return set(session.scalars(select(Artifact.key).where(Artifact.key.in_(keys), Artifact.deleted_at.is_(None))))


def _batches(items: Iterator, size: int) -> Iterator[list]:
    while batch := list(islice(items, size)):
        yield batch


def find(ctx: Context, now: datetime, grace_seconds: float, batch: int = BATCH) -> Iterator[str]:
    """Keys under an owned prefix, older than the grace period, that no row names."""
    cutoff = now - timedelta(seconds=grace_seconds)
    for prefix, named in owners().items():
        for infos in _batches(iter(ctx.storage.list(prefix)), batch):
            old = [i.key for i in infos if i.modified is None or i.modified <= cutoff]
            if not old:
                continue
            with ctx.db.session() as s:
                live = named(s, old)
            yield from (key for key in old if key not in live)


def remove(ctx: Context, now: datetime, grace_seconds: float, batch: int = BATCH) -> int:
    """Delete every orphan `find` reports; returns how many were deleted."""
    removed = 0
    for key in find(ctx, now, grace_seconds, batch):
        try:
            removed += ctx.storage.delete(key)
            log.warning("cleanup: deleted %s, which no row names (left by an interrupted run)", key)
        except Exception:
            log.exception("cleanup: could not delete orphan %s; will retry", key)
    return removed
