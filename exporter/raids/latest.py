"""Stable public pointers to an agency's newest export: `latest/<file>` and `latest.json`.

They always lead to the newest succeeded, unexpired *full* public export of the agency,
found from the jobs table at the moment of the request: never from a listing of storage,
never an incremental, a failed, an expired or a private export. A pointer changes only
when a newer export has been committed whole, so a reader never meets half of one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from ..context import Context
from ..db import utcnow
from ..errors import InvalidRequest
from ..models import Artifact, Job
from .record import ror_id
from .scope import PUBLIC
from .sitemaps import public_base_url

CANDIDATES = 5  # newest exports looked at for one whose objects are all still there


def latest_public_export(ctx: Context, agency: str, now: datetime | None = None) -> Job | None:
    """The newest succeeded, unexpired full public export of the agency (its artifacts loaded), or None."""
    try:
        short = ror_id(agency)
    except InvalidRequest:
        return None
    now = now or utcnow()
    query = (
        select(Job)
        .options(selectinload(Job.artifacts))
        .where(
            Job.kind == PUBLIC,
            Job.status == "succeeded",
            Job.params["agency"].as_string() == short,
            Job.result["mode"].as_string() == "full",
            or_(Job.expires_at.is_(None), Job.expires_at > now),
        )
        .order_by(Job.result["as_of"].as_string().desc(), Job.finished_at.desc(), Job.id)
        .limit(CANDIDATES)
    )
    with ctx.db.session() as s:
        for job in s.scalars(query):
            if job.artifacts and all(a.public and a.deleted_at is None for a in job.artifacts):
                return job
    return None


def folder_of(job: Job) -> str:
    """The key prefix the export's objects share (`exports/public/<agency>/<ts>-<job>-<run>/`)."""
    return next(a.key for a in job.artifacts if a.name == "archive").rsplit("/", 1)[0] + "/"


def latest_file(ctx: Context, agency: str, name: str) -> Artifact | None:
    """The object `name` (e.g. raids.zip, SHA256SUMS) of the agency's newest full public export."""
    job = latest_public_export(ctx, agency)
    if job is None:
        return None
    key = folder_of(job) + name
    return next((a for a in job.artifacts if a.key == key), None)


def latest_url(settings, agency: str) -> str:
    """Where the newest full public export of an agency is always served."""
    return f"{public_base_url(settings)}exports/public/{agency}/latest/"


def latest_document(ctx: Context, agency: str) -> dict[str, Any] | None:
    """latest.json: which export is the current one, and every file of it with its stable and its own URL."""
    job = latest_public_export(ctx, agency)
    if job is None:
        return None
    base, folder, result = public_base_url(ctx.settings), folder_of(job), job.result or {}
    pointer = latest_url(ctx.settings, job.params["agency"])
    files = [
        {"name": a.key[len(folder):], "url": base + a.key, "latest_url": pointer + a.key[len(folder):], "size": a.size, "sha256": a.sha256, "md5": a.md5, "content_type": a.content_type}
        for a in sorted(job.artifacts, key=lambda a: a.key)
        if a.key.startswith(folder)
    ]
    return {
        "agency": job.params["agency"],
        "job_id": job.id,
        "generated_at": result.get("generated_at"),
        "as_of": result.get("as_of"),
        "changes_up_to": result.get("cutoff"),
        "counts": result.get("counts"),
        "folder": base + folder,
        "files": files,
    }
