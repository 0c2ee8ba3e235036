"""The dump job kind (`publish_dump`, queue `dumps`), the hook that submits it after each public
export, and the `dumps/` prefix for cleanup."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import jobs, orphans
from ..context import Context
from ..errors import InvalidRequest
from ..kinds import JobKind, register
from ..models import Job
from ..raids.record import ror_id
from ..raids.scope import PUBLIC
from ..runner import JobRun
from . import layout
from .publish import named_keys, publish

log = logging.getLogger(__name__)

KIND = "publish_dump"
QUEUE = "dumps"


def normalize(params: dict[str, Any]) -> dict[str, Any]:
    """{agency: short ROR id}."""
    agency = params.pop("agency", None)
    if not isinstance(agency, str) or not agency.strip():
        raise InvalidRequest("agency is required (the agency's ROR, e.g. https://ror.org/038sjwq14)", field="agency")
    if params:
        raise InvalidRequest(f"unknown parameter(s): {', '.join(sorted(params))}", field=sorted(params)[0])
    return {"agency": ror_id(agency)}


def run(job: JobRun) -> dict[str, Any]:
    return publish(job.ctx, job.params["agency"], job.run_id, job_id=job.job_id, progress=lambda n: job.progress(n))


register(JobKind(name=KIND, task="exporter.publish_dump", queue=QUEUE, run=run, normalize=normalize, description="publish the next change set of one agency's public dump"))
orphans.register(layout.ROOT, named_keys)


def pending_publication(session: Session, agency: str) -> Job | None:
    params = normalize({"agency": agency})
    return session.scalars(select(Job).where(Job.kind == KIND, Job.status == "pending", Job.dedupe_key == jobs.dedupe_key(KIND, params)).limit(1)).first()


def on_final(ctx: Context, session: Session, job_id: str, status: str) -> Callable[[], None] | None:
    """A jobs.ON_FINAL hook: a succeeded public export submits its agency's dump publication, in the same transaction."""
    if status != "succeeded" or not ctx.settings.dump_after_export:
        return None
    job = session.get(Job, job_id)
    if job is None or job.kind != PUBLIC:
        return None
    agency = job.params["agency"]
    if pending_publication(session, agency) is not None:
        return None  # one waiting publication covers every export before it
    dump = jobs.add_pending(session, KIND, {"agency": agency}, requested_by=f"export {job_id}")

    def send() -> None:
        try:
            jobs.dispatch(ctx, dump)
        except Exception as exc:
            log.info("job %s: dump publication %s not enqueued (%s); the reaper sends it, or run `exporter dump publish`", job_id, dump.id, exc)

    return send


jobs.ON_FINAL.append(on_final)
