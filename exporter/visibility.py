"""What a job shows the outside: its status as the API names it, whether it belongs to one
service point, and which of its artifacts are its data and its manifest."""

from __future__ import annotations

from sqlalchemy import String, cast

from .models import Artifact, Job

# Job kinds whose artifacts belong to one service point, and the param naming it.
PRIVATE_KINDS: set[str] = {"export_private"}
SERVICE_POINT_PARAM = "service_point"
AGENCY_PARAM = "agency"

API_STATUS = {"pending": "pending", "running": "running", "succeeded": "completed", "failed": "failed", "cancelled": "cancelled", "expired": "expired"}
JOB_STATUS = {v: k for k, v in API_STATUS.items()}


def is_private(job: Job) -> bool:
    return job.kind in PRIVATE_KINDS


def job_service_point(job: Job) -> str | None:
    """The service point a private export belongs to (as a string), or None."""
    if not is_private(job):
        return None
    value = (job.params or {}).get(SERVICE_POINT_PARAM)
    return None if value is None else str(value)


def service_point_column():
    """SQL expression of a job's service point param, as text, on SQLite and PostgreSQL."""
    return cast(Job.params[SERVICE_POINT_PARAM].as_string(), String)


def pick_artifact(job: Job, which: str) -> Artifact | None:
    """The job's `data` or `manifest` artifact (by name, else by filename), or one by exact name."""
    arts = list(job.artifacts)
    for a in arts:
        if a.name == which:
            return a
    manifests = [a for a in arts if "manifest" in a.name.lower() or "manifest" in a.filename.lower()]
    if which == "manifest":
        return manifests[0] if manifests else None
    if which == "data":
        for a in arts:
            if a.name == "archive":
                return a
        rest = [a for a in arts if a not in manifests]
        return max(rest, key=lambda a: a.size) if rest else None
    return None


def file_size(job: Job) -> int | None:
    data = pick_artifact(job, "data")
    return data.size if data else None
