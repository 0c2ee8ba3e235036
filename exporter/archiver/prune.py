"""Upkeep of stored copies: resources that left their portal keep their last copy for a
grace period, then lose it; the others keep their newest K versions."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

from sqlalchemy import select

from ..context import Context
from ..db import utcnow
from .models import Archival, ArchiveVersion, Resource, WarcFile

log = logging.getLogger(__name__)


PRUNE_BATCH = 500  # resources per page; their versions are read page by page


def _resource_pages(ctx: Context, batch: int) -> Iterator[list[tuple[str, datetime | None]]]:
    """(resource id, gone_at) of resources with stored versions, in keyset pages."""
    last = ""
    while True:
        with ctx.db.session() as s:
            page = s.execute(
                select(Resource.id, Resource.gone_at)
                .where(Resource.id > last, select(ArchiveVersion.id).where(ArchiveVersion.resource_id == Resource.id, ArchiveVersion.deleted_at.is_(None)).exists())
                .order_by(Resource.id)
                .limit(batch)
            ).all()
        if not page:
            return
        yield [(r.id, r.gone_at) for r in page]
        last = page[-1].id


def prune(ctx: Context, keep: int | None = None, dry_run: bool = False, batch: int = PRUNE_BATCH) -> dict[str, Any]:
    """Delete stored copies beyond the newest `keep` per resource; of a resource gone from its
    portal, all but the newest until ARCHIVER_GONE_GRACE_DAYS have passed, then that one too.

    Resources are read in keyset pages of `batch`, so memory does not grow with the portal."""
    keep = keep or ctx.settings.archiver_keep_versions
    grace = timedelta(days=ctx.settings.archiver_gone_grace_days)
    now = utcnow()
    versions_deleted = objects_deleted = resources_seen = 0
    gone_resources = kept_in_grace = 0  # counts, not sets: memory stays flat however many there are
    keys: list[str] = []
    for page in _resource_pages(ctx, batch):
        resources_seen += len(page)
        gone_at = dict(page)
        with ctx.db.session() as s:
            rows = s.execute(
                select(ArchiveVersion.id, ArchiveVersion.key, ArchiveVersion.resource_id)
                .where(ArchiveVersion.resource_id.in_(list(gone_at)), ArchiveVersion.deleted_at.is_(None))
                .order_by(ArchiveVersion.resource_id, ArchiveVersion.created_at.desc(), ArchiveVersion.id.desc())
            ).all()
        doomed: list[tuple[int, str, str, bool]] = []  # (version id, key, resource id, resource gone)
        for rid, versions in groupby(rows, key=lambda r: r.resource_id):
            versions = list(versions)
            gone = gone_at[rid] is not None
            if not gone:
                kept = keep
            elif now - gone_at[rid] < grace:
                kept = 1
                kept_in_grace += 1
            else:
                kept = 0
            gone_resources += gone and len(versions) > kept
            for v in versions[kept:]:
                doomed.append((v.id, v.key, rid, gone))
        for vid, key, rid, gone in doomed:
            if len(keys) < 1000:
                keys.append(key)
            if dry_run:
                versions_deleted += 1
                continue
            with ctx.db.session() as s:  # the row first: a crash then leaves an orphan (cleanup's), never a row naming nothing
                s.get(ArchiveVersion, vid).deleted_at = now
                if gone:
                    arch = s.get(Archival, rid)
                    if arch is not None and arch.cache_key == key:
                        arch.cache_key = None
                        arch.cache_url = None
            versions_deleted += 1
            try:
                objects_deleted += ctx.storage.delete(key)
            except Exception:
                log.exception("archiver: could not delete %s; cleanup removes it as an orphan", key)
    warc_files = 0 if dry_run else prune_warc(ctx, now)
    log.info(
        "archiver: prune %s %d stored copies (%d of %d resources gone from their portal; %d gone ones keep their last copy for the grace period)",
        "would delete" if dry_run else "deleted", versions_deleted, gone_resources, resources_seen, kept_in_grace,
    )
    return {
        "keep": keep, "dry_run": dry_run, "versions_deleted": versions_deleted, "objects_deleted": objects_deleted,
        "gone_resources": gone_resources, "gone_kept_for_grace": kept_in_grace, "keys": keys, "warc_files_deleted": warc_files,
    }


def prune_warc(ctx: Context, now: datetime) -> int:
    """WARC files (and their indexes) older than ARCHIVER_WARC_KEEP_DAYS: rows marked, then objects deleted."""
    cutoff = now - timedelta(days=ctx.settings.archiver_warc_keep_days)
    deleted = 0
    while True:
        with ctx.db.session() as s:
            rows = list(s.scalars(select(WarcFile).where(WarcFile.created_at < cutoff, WarcFile.deleted_at.is_(None)).order_by(WarcFile.id).limit(PRUNE_BATCH)))
            keys = [k for r in rows for k in (r.key, r.index_key)]
            for r in rows:
                r.deleted_at = now
        if not rows:
            return deleted
        for key in keys:
            try:
                ctx.storage.delete(key)
            except Exception:
                log.exception("archiver: could not delete %s; cleanup removes it as an orphan", key)
        deleted += len(rows)
