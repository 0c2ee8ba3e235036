"""Zooniverse: the subject-set import of a published batch's manifest through the Panoptes API.

`PanoptesClient` speaks Panoptes' JSON API (`Accept: application/vnd.api+json; version=1`, JSON
bodies as `application/json`, `Authorization: Bearer <ZOONIVERSE_TOKEN>`) through
`exporter.netsafety.safe_session` (ZOONIVERSE_ALLOW_NETWORKS). The `import_collection` job:
1. a project without a subject set gets one (`POST /subject_sets`), its id kept on the project;
2. `POST /subject_set_imports {"subject_set_imports": {"source_url": <manifest URL>, "links":
   {"subject_set": <id>}}}`; `requesting` is committed before the request and the import's id right
   after, so a run killed in between looks the import up among the subject set's imports
   (`GET /subject_set_imports?subject_set_id=`) instead of asking twice;
3. `GET /subject_set_imports/<id>` until `imported_count` reaches `manifest_count` (Panoptes counts
   failed rows too, in `failed_count`); a run that follows longer than ZOONIVERSE_FOLLOW_SECONDS
   goes back to the queue (TransientError) and the next run goes on from the id.
The batch becomes `imported` with the counts, and the owner is told, in the job's final transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import requests
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .. import jobs
from ..context import Context
from ..errors import ExporterError, NotFound, TransientError
from ..models import Job
from ..netsafety import BlockedAddress, safe_session
from ..runner import JobRun
from .models import (
    IMPORT,
    IMPORT_CREATING_SET,
    IMPORT_DONE,
    IMPORT_REQUESTING,
    IMPORT_RUNNING,
    IMPORTED,
    PUBLISHED,
    CollectionBatch,
    CollectionProject,
    batch_params,
)
from .notify import notify

log = logging.getLogger(__name__)

KIND = IMPORT
ACCEPT = "application/vnd.api+json; version=1"
USER_AGENT = "Exporter-Collections/1"


class PanoptesError(ExporterError):
    def __init__(self, status: int, method: str, path: str, message: str):
        super().__init__(f"Zooniverse answered {status} to {method} {path}: {message}")
        self.status = status


def configured(settings) -> bool:
    return bool(settings.zooniverse_url and settings.zooniverse_token)


class PanoptesClient:
    def __init__(self, base: str, token: str, allow=(), timeout: float = 60):
        self.base, self.token, self.timeout = base.rstrip("/"), token, timeout
        self.http = safe_session(allow, user_agent=USER_AGENT)

    @classmethod
    def from_settings(cls, settings) -> PanoptesClient:
        return cls(settings.zooniverse_url, settings.zooniverse_token, settings.zooniverse_allow_networks, settings.zooniverse_timeout)

    def request(self, method: str, path: str, body: dict | None = None, params: dict | None = None) -> dict[str, Any]:
        headers = {"Accept": ACCEPT, "Authorization": f"Bearer {self.token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            resp = self.http.request(method, self.base + path, json=body, params=params, headers=headers, timeout=(10, self.timeout), allow_redirects=False)
        except BlockedAddress as exc:
            raise ExporterError(f"ZOONIVERSE_URL is not allowed: {exc} (see EXPORTER_ZOONIVERSE_ALLOW_NETWORKS)") from None
        except requests.RequestException as exc:
            raise TransientError(f"Zooniverse did not answer {method} {path}: {type(exc).__name__}: {exc}") from None
        if resp.status_code == 429 or resp.status_code >= 500:
            raise TransientError(f"Zooniverse answered {resp.status_code} to {method} {path}; asked again later")
        try:
            data = resp.json() if resp.content else {}
        except ValueError:
            data = {}
        if resp.status_code >= 400:
            errors = data.get("errors") if isinstance(data, dict) else None
            message = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors) if errors else resp.text[:300]
            raise PanoptesError(resp.status_code, method, path, message)
        return data

    @staticmethod
    def _first(data: dict[str, Any], kind: str) -> dict[str, Any]:
        items = data.get(kind) or []
        if not items:
            raise ExporterError(f"Zooniverse's answer holds no {kind}")
        return items[0]

    def create_subject_set(self, project_id: str, name: str) -> dict[str, Any]:
        return self._first(self.request("POST", "/subject_sets", {"subject_sets": {"display_name": name, "links": {"project": project_id}}}), "subject_sets")

    def find_subject_set(self, project_id: str, name: str) -> dict[str, Any] | None:
        items = self.request("GET", "/subject_sets", params={"project_id": project_id, "display_name": name}).get("subject_sets") or []
        return next((s for s in items if s.get("display_name") == name), None)

    def create_import(self, subject_set: str, source_url: str) -> dict[str, Any]:
        body = {"subject_set_imports": {"source_url": source_url, "links": {"subject_set": subject_set}}}
        return self._first(self.request("POST", "/subject_set_imports", body), "subject_set_imports")

    def find_import(self, subject_set: str, source_url: str) -> dict[str, Any] | None:
        items = self.request("GET", "/subject_set_imports", params={"subject_set_id": subject_set}).get("subject_set_imports") or []
        return next((i for i in items if i.get("source_url") == source_url), None)

    def get_import(self, import_id: str) -> dict[str, Any]:
        return self._first(self.request("GET", f"/subject_set_imports/{import_id}"), "subject_set_imports")


def normalize(params: dict[str, Any]) -> dict[str, Any]:
    return batch_params(params)


def _save(ctx: Context, batch_id: int, **values: Any) -> None:
    with ctx.db.session() as s:
        s.execute(update(CollectionBatch).where(CollectionBatch.id == batch_id).values(**values).execution_options(synchronize_session=False))


def _sleep(job: JobRun, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        job.progress(0, None)  # raises JobLost when the job was cancelled or taken over
        time.sleep(min(left, 0.5))


def run(job: JobRun) -> dict[str, Any]:
    ctx = job.ctx
    if not configured(ctx.settings):
        raise ExporterError("EXPORTER_ZOONIVERSE_URL and EXPORTER_ZOONIVERSE_TOKEN must be set to import into Zooniverse")
    client = PanoptesClient.from_settings(ctx.settings)
    with ctx.db.session() as s:
        b = s.get(CollectionBatch, job.params["batch"])
        if b is None:
            raise NotFound(f"no collection batch {job.params['batch']}")
        p = s.get(CollectionProject, b.project_id)
    if b.state not in (PUBLISHED, IMPORTED) or not b.manifest_url:
        raise ExporterError(f"batch {b.id} is {b.state}; only a published batch is imported")
    subject_set = p.subject_set_id or _subject_set(ctx, job, client, b, p)
    if b.import_id is None:
        found = client.find_import(subject_set, b.manifest_url) if b.import_state == IMPORT_REQUESTING else None
        if found is None:
            jobs.heartbeat(ctx, job.job_id, job.token)  # the fence: only the claim holder asks Zooniverse
            _save(ctx, b.id, import_state=IMPORT_REQUESTING)
            found = client.create_import(subject_set, b.manifest_url)
        b.import_id = str(found["id"])
        _save(ctx, b.id, import_id=b.import_id, import_state=IMPORT_RUNNING)
        job.log.info("job %s: batch %s: Zooniverse import %s of %s into subject set %s", job.job_id, b.id, b.import_id, b.manifest_url, subject_set)
    deadline = time.monotonic() + ctx.settings.zooniverse_follow_seconds
    while True:
        imp = client.get_import(b.import_id)
        manifest, imported, failed = int(imp.get("manifest_count") or 0), int(imp.get("imported_count") or 0), int(imp.get("failed_count") or 0)
        done = manifest > 0 and imported >= manifest
        _save(ctx, b.id, manifest_count=manifest, imported_count=imported, failed_count=failed, import_state=IMPORT_DONE if done else IMPORT_RUNNING)
        job.progress(imported, manifest or None, force=True)
        if done:
            return {"batch": b.id, "subject_set": subject_set, "import_id": b.import_id, "manifest_count": manifest, "imported_count": imported, "failed_count": failed}
        if time.monotonic() > deadline:
            raise TransientError(f"Zooniverse import {b.import_id} has {imported} of {manifest} rows; followed again later")
        _sleep(job, ctx.settings.zooniverse_poll_seconds)


def _subject_set(ctx: Context, job: JobRun, client: PanoptesClient, b: CollectionBatch, p: CollectionProject) -> str:
    name = f"{p.name} (Exporter)"
    found = client.find_subject_set(p.zooniverse_project_id, name) if b.import_state == IMPORT_CREATING_SET else None
    if found is None:
        jobs.heartbeat(ctx, job.job_id, job.token)
        _save(ctx, b.id, import_state=IMPORT_CREATING_SET)
        found = client.create_subject_set(p.zooniverse_project_id, name)
    set_id = str(found["id"])
    with ctx.db.session() as s:
        s.execute(update(CollectionProject).where(CollectionProject.id == p.id, CollectionProject.subject_set_id.is_(None)).values(subject_set_id=set_id).execution_options(synchronize_session=False))
        set_id = s.get(CollectionProject, p.id).subject_set_id
    _save(ctx, b.id, import_state=None)
    b.import_state = None
    return set_id


def request_import(ctx: Context, session: Session, b: CollectionBatch) -> Callable[[], None] | None:
    """In the publication's final transaction: the import job, when Zooniverse is configured and the project names its Zooniverse project."""
    p = session.get(CollectionProject, b.project_id)
    if not configured(ctx.settings) or not p.zooniverse_project_id:
        return None
    with session.begin_nested():
        job = jobs.new_job(KIND, {"batch": b.id}, requested_by="collections", description=f"Zooniverse import of collection batch {b.id}")
        session.add(job)
        session.flush()
    b.import_job_id, b.import_id, b.import_state = job.id, None, None
    return lambda: jobs.dispatch(ctx, job)


def on_import_final(ctx: Context, session: Session, job_id: str, status: str) -> Callable[[], None] | None:
    b = session.scalars(select(CollectionBatch).where(CollectionBatch.import_job_id == job_id)).first()
    if b is None or b.state != PUBLISHED:
        return None
    if status == "succeeded":
        b.state = IMPORTED
        return notify(ctx, session, b, "imported", job_id=job_id)
    b.error = session.scalar(select(Job.error).where(Job.id == job_id)) or status
    return notify(ctx, session, b, "failed", job_id=job_id, error=f"the Zooniverse import failed: {b.error}")
