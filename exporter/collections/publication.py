"""Publishing an approved batch (`publish_collection`) and its Zooniverse manifest.

The job copies each converted image to a public key `collections/<project>/<batch>/<run id>/<external
id>.<ext>` and writes the manifest (`manifest.csv`, Zooniverse's subject-set import format) last,
all as public artifacts of the job: they are moved to their keys and recorded with the job's
success in one compare-and-set (a run that lost its claim publishes nothing), and the ON_FINAL hook
marks the batch `published` with the manifest's URL in that same transaction. `/public/collections/...`
serves an object only while its batch is published (`public_object`). With a Zooniverse token
configured, the same transaction asks for the import (`import_collection`, exporter.collections.panoptes).

External ids come from each image's sha256 (`collection_files.external_id`), so publishing a batch
again, or the same file in a later batch, gives Zooniverse the same subject to update.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .. import jobs
from ..context import Context
from ..errors import InvalidRequest, NotFound
from ..models import Artifact, Job
from ..runner import JobRun
from . import panoptes
from .models import (
    APPROVED,
    FAILED,
    PUBLIC_STATES,
    PUBLISH,
    PUBLISHED,
    PUBLISHING,
    CollectionBatch,
    CollectionFile,
    CollectionProject,
    batch_params,
)
from .notify import after_all, notify
from .projects import MANIFEST_ROWS
from .views import batch_row, dispatch

log = logging.getLogger(__name__)

KIND = PUBLISH
PREFIX = "collections/"
MANIFEST = "manifest.csv"
HIDDEN = ("object_id", "source_name", "sha256")  # metadata Zooniverse keeps but volunteers do not see ("#" keys)


def public_base(ctx: Context) -> str:
    return (ctx.settings.collections_public_url or f"{ctx.settings.public_url}/public").rstrip("/")


def public_url(ctx: Context, key: str) -> str:
    return f"{public_base(ctx)}/{key}"


def manifest_csv(rows: Iterable[dict[str, Any]]) -> bytes:
    """Zooniverse's manifest: external_id, location:1 and metadata:<key> columns (`metadata:#key` for hidden ones)."""
    rows = list(rows)
    keys = sorted({k for r in rows for k in r["metadata"]} - set(HIDDEN))
    header = ["external_id", "location:1", *(f"metadata:#{k}" for k in HIDDEN), *(f"metadata:{k}" for k in keys)]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        m = r["metadata"]
        w.writerow([r["external_id"], r["location"], *(m.get(k, "") for k in HIDDEN), *(m.get(k, "") for k in keys)])
    return out.getvalue().encode()


def normalize(params: dict[str, Any]) -> dict[str, Any]:
    return batch_params(params)


def run(job: JobRun) -> dict[str, Any]:
    ctx = job.ctx
    with ctx.db.session() as s:
        b = s.get(CollectionBatch, job.params["batch"])
        if b is None:
            raise NotFound(f"no collection batch {job.params['batch']}")
        if b.state not in (APPROVED, PUBLISHING):
            raise InvalidRequest(f"batch {b.id} is {b.state}; only an approved batch is published", field="batch")
        p = s.get(CollectionProject, b.project_id)
        s.execute(update(CollectionBatch).where(CollectionBatch.id == b.id, CollectionBatch.state == APPROVED).values(state=PUBLISHING).execution_options(synchronize_session=False))
        files = list(s.scalars(select(CollectionFile).where(CollectionFile.batch_id == b.id, CollectionFile.converted_key.is_not(None)).order_by(CollectionFile.id)))
    if len(files) > MANIFEST_ROWS:
        raise InvalidRequest(f"batch {b.id} holds {len(files)} images; a Zooniverse manifest holds at most {MANIFEST_ROWS}", field="batch")
    prefix = f"{PREFIX}{p.name}/{b.id}/{job.run_id}"
    rows = []
    job.progress(0, len(files) + 1, force=True)
    for i, f in enumerate(files, 1):
        key = f"{prefix}/{f.external_id}.{f.extension}"
        with ctx.storage.open(f.public_key if b.converted_deleted_at else f.converted_key) as fh:  # after retention, from its last publication
            job.add_artifact(f"file-{f.id}", key, fh, public=True, content_type=f.content_type)
        meta = {**(f.file_metadata or {}), "object_id": f.object_id or "", "source_name": f.source_name, "sha256": f.sha256 or ""}
        rows.append({"external_id": f.external_id, "location": public_url(ctx, key), "metadata": meta})
        job.progress(i, len(files) + 1)
    manifest_key = f"{prefix}/{MANIFEST}"
    job.add_artifact("manifest", manifest_key, manifest_csv(rows), public=True, content_type="text/csv")  # staged last, moved last
    return {"batch": b.id, "project": p.name, "files": len(rows), "manifest_key": manifest_key, "manifest_url": public_url(ctx, manifest_key)}


def on_publish_final(ctx: Context, session: Session, job_id: str, status: str, kind: str | None) -> Callable[[], None] | None:
    """jobs.ON_FINAL for publish_collection jobs: the batch is published (with the import asked for) or failed, and the owner told."""
    if kind != KIND:
        return None
    b = session.scalars(select(CollectionBatch).where(CollectionBatch.publish_job_id == job_id)).first()
    if b is None or b.state not in (APPROVED, PUBLISHING):
        return None
    actions = []
    if status == "succeeded":
        result = session.scalar(select(Job.result).where(Job.id == job_id)) or {}
        b.state, b.manifest_key, b.manifest_url, b.error = PUBLISHED, result.get("manifest_key"), result.get("manifest_url"), None
        for name, key in session.execute(select(Artifact.name, Artifact.key).where(Artifact.job_id == job_id, Artifact.name.like("file-%"))).all():
            session.execute(update(CollectionFile).where(CollectionFile.id == int(name[5:])).values(public_key=key).execution_options(synchronize_session=False))
        actions.append(notify(ctx, session, b, "published", job_id=job_id))
        actions.append(panoptes.request_import(ctx, session, b))
    else:
        b.state, b.error = FAILED, session.scalar(select(Job.error).where(Job.id == job_id)) or status
        actions.append(notify(ctx, session, b, "failed", job_id=job_id, error=b.error))
    session.flush()
    return after_all(actions)


def public_object(ctx: Context, key: str) -> Artifact | None:
    """The published object at `key` under collections/, or None unless its batch is published (or imported)."""
    art = jobs.public_artifact(ctx, key)
    if art is None:
        return None
    with ctx.db.session() as s:
        state = s.scalar(select(CollectionBatch.state).where(CollectionBatch.publish_job_id == art.job_id))
    return art if state in PUBLIC_STATES else None


def republish(ctx: Context, batch_id: Any, by: str) -> Job:
    """Publish a published batch again (new keys, the same external ids): a new publish_collection job."""
    with ctx.db.session() as s:
        b = batch_row(s, batch_id)
        if b.state not in PUBLIC_STATES and b.state != FAILED:
            raise InvalidRequest(f"batch {b.id} is {b.state}; only a published batch (or one whose publication failed) is published again", field="batch")
        if b.state == FAILED and b.publish_job_id is None:
            raise InvalidRequest(f"batch {b.id} was never approved", field="batch")
        got = s.execute(update(CollectionBatch).where(CollectionBatch.id == b.id, CollectionBatch.state == b.state).values(state=APPROVED).execution_options(synchronize_session=False)).rowcount
        if got != 1:
            raise InvalidRequest(f"batch {b.id} changed meanwhile; try again", field="batch")
        job = jobs.add_pending(s, KIND, {"batch": b.id}, requested_by=by, description=f"publication of collection batch {b.id} (again)")
        s.execute(update(CollectionBatch).where(CollectionBatch.id == b.id).values(publish_job_id=job.id).execution_options(synchronize_session=False))
    dispatch(ctx, job)
    return job
