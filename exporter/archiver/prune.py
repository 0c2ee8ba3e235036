"""Upkeep of stored copies: resources that left their portal lose them all; the others
keep their newest K versions."""

from __future__ import annotations

import logging
from itertools import groupby
from typing import Any

from sqlalchemy import select

from ..context import Context
from ..db import utcnow
from .models import Archival, ArchiveVersion, Resource

log = logging.getLogger(__name__)


def prune(ctx: Context, keep: int | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Delete stored copies beyond the newest `keep` per resource, and all copies of gone ones."""
    keep = keep or ctx.settings.archiver_keep_versions
    now = utcnow()
    doomed: list[tuple[int, str, str, bool]] = []  # (version id, key, resource id, resource gone)
    with ctx.db.session() as s:
        rows = s.execute(
            select(ArchiveVersion.id, ArchiveVersion.key, ArchiveVersion.resource_id, Resource.gone_at)
            .join(Resource, Resource.id == ArchiveVersion.resource_id)
            .where(ArchiveVersion.deleted_at.is_(None))
            .order_by(ArchiveVersion.resource_id, ArchiveVersion.created_at.desc(), ArchiveVersion.id.desc())
        ).all()
    for rid, versions in groupby(rows, key=lambda r: r.resource_id):
        versions = list(versions)
        gone = versions[0].gone_at is not None
        for v in versions if gone else versions[keep:]:
            doomed.append((v.id, v.key, rid, gone))
    deleted_bytes_keys = 0
    if not dry_run:
        for vid, key, rid, gone in doomed:
            try:
                deleted_bytes_keys += ctx.storage.delete(key)
            except Exception:
                log.exception("archiver: could not delete %s; will retry at the next prune", key)
                continue
            with ctx.db.session() as s:
                s.get(ArchiveVersion, vid).deleted_at = now
                if gone:
                    arch = s.get(Archival, rid)
                    if arch is not None and arch.cache_key == key:
                        arch.cache_key = None
                        arch.cache_url = None
    gone_resources = len({rid for _, _, rid, gone in doomed if gone})
    log.info("archiver: prune %s %d stored copies (%d of %d resources gone from their portal)", "would delete" if dry_run else "deleted", len(doomed), gone_resources, len({r.resource_id for r in rows}))
    return {"keep": keep, "dry_run": dry_run, "versions_deleted": len(doomed), "objects_deleted": deleted_bytes_keys, "gone_resources": gone_resources, "keys": [k for _, k, _, _ in doomed][:1000]}
