"""MapColonies' export-service shapes, so their clients can switch to us.

- `create_response(submission)`: what `POST /create/roi` answers: the completed shape for a
  request answered from cache, else the in-progress one (`jobId`, `taskIds`, `status`
  In-Progress, `isDuplicated`);
- `completed_response(ctx, job)` / `failed_response(job)`: the final shapes, which are
  also the body of every callback of a tiles job (`callback_payload`, the tiles kind's
  `callback_payload`);
- `task_status(job)`: `{"percentage", "status"}` of `GET /taskStatus/{jobId}`, the status one of
  their task statuses (Pending, In-Progress, Completed, Failed, Expired, Aborted).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..access import Principal, signed_download_url
from ..models import Job
from ..submissions import Submission
from ..visibility import pick_artifact

IN_PROGRESS = "In-Progress"
COMPLETED = "Completed"
FAILED = "Failed"
# Their job manager's task statuses (mc-priority-queue's OperationStatus), which taskStatus reports as they are.
TASK_STATUS = {"pending": "Pending", "running": IN_PROGRESS, "succeeded": COMPLETED, "failed": FAILED, "cancelled": "Aborted", "expired": "Expired"}
LINKS = {"dataURI": "data", "metadataURI": "manifest"}


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def links(ctx, job: Job, principal: Principal | None = None) -> dict[str, str | None]:
    """Signed, expiring links to the GeoPackage and its metadata sidecar."""
    out: dict[str, str | None] = {}
    for field, name in LINKS.items():
        art = pick_artifact(job, name)
        out[field] = signed_download_url(ctx, job.id, art.name, principal) if art is not None and art.deleted_at is None else None
    return out


def _common(job: Job) -> dict[str, Any]:
    params = job.params or {}
    return {"jobId": job.id, "recordCatalogId": params.get("recordCatalogId"), "description": job.description, "roi": params.get("roi")}


def completed_response(ctx, job: Job, principal: Principal | None = None) -> dict[str, Any]:
    data = pick_artifact(job, "data")
    return {
        "status": COMPLETED,
        "links": links(ctx, job, principal),
        "expirationTime": _iso(job.expires_at),
        "fileSize": data.size if data is not None else None,
        **_common(job),
        "errorReason": "",
    }


def failed_response(job: Job, status: str | None = None) -> dict[str, Any]:
    status = status or job.status
    reason = job.error or ("the export was cancelled" if status == "cancelled" else "the export's files have expired" if status == "expired" else "the export failed")
    return {"status": FAILED, "links": None, "expirationTime": None, "fileSize": None, **_common(job), "errorReason": reason}


def in_progress_response(job: Job, duplicated: bool) -> dict[str, Any]:
    return {"jobId": job.id, "taskIds": [job.id], "status": IN_PROGRESS, "isDuplicated": duplicated}


def create_response(ctx, sub: Submission, principal: Principal | None = None) -> dict[str, Any]:
    """The answer to a create request: completed (cached) or in progress (new or joined)."""
    job = sub.job
    if job.status == "succeeded":
        return completed_response(ctx, job, principal)
    if job.status in ("pending", "running"):
        return in_progress_response(job, sub.is_duplicate)
    return failed_response(job)


def status_response(ctx, job: Job, principal: Principal | None = None) -> dict[str, Any]:
    """A job in MapColonies' shape, whatever its status."""
    if job.status == "succeeded":
        return completed_response(ctx, job, principal)
    if job.status in ("pending", "running"):
        return {**in_progress_response(job, False), "percentage": job.percentage}
    return failed_response(job)


def task_status(job: Job) -> dict[str, Any]:
    return {"percentage": job.percentage, "status": TASK_STATUS[job.status]}


def callback_payload(ctx, job: Job, status: str) -> dict[str, Any]:
    """A tiles job's callback body: the completed or failed shape for the status announced."""
    if status == "succeeded" and job.status == "succeeded":
        return completed_response(ctx, job)
    return failed_response(job, status)
