"""Portal sweeps and URL lists: enumerate, upsert, fan out the archiving in parts.

A sweep never waits inside a worker: it splits the resources due into parts of
ARCHIVER_BATCH_SIZE (exporter.parts), each an `exporter.run_part` task, and returns. Each
part archives its resources as one batch (archive.archive_batch: one read, conditional
requests on ARCHIVER_THREADS threads, and while they run one write per chunk of fetched
resources, each chunk's WARC records written once it is committed), so a resource whose
stored copy is still current costs one 304 and a share of two transactions. The last part
to finish computes the sweep's summary and succeeds the job.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import select

from .. import parts
from ..context import Context, Enqueue
from ..db import utcnow
from ..jobs import dedupe_key, submit
from ..models import ACTIVE_STATUSES, Job
from ..runner import JobRun
from . import warc
from .archive import archive_batch, archive_resource
from .ckan import client_for, resource_rows
from .models import Archival, Portal, Resource, resource_id_for
from .params import normalize_sweep
from .portals import get_portal
from .resources import ANALYZE_EVERY, due_ids, refresh_statistics, sweep_gone, upsert_portal_resources, upsert_url

log = logging.getLogger(__name__)

ARCHIVE_TASK = "exporter.archive_resource"
QUEUE = "archive"


def archive_part(ctx: Context, job: Job, ids: list[str], seq: int) -> None:
    """A part's work: archive its resources as one batch (repeating it is harmless), and its
    WARC file, whose records are written for each chunk once it is committed while the
    part's other fetches go on."""
    if not ctx.settings.archiver_warc:
        archive_batch(ctx, ids, job_id=job.id)
        return
    part = warc.PartWarc(ctx, job, seq)
    try:
        archive_batch(ctx, ids, job_id=job.id, on_recorded=part.add)
    except BaseException:
        part.discard()
        raise
    part.close()  # a failure is logged there: the copies and their records stand


def _status_counts(ctx: Context, batches: Iterable[Sequence[str]]) -> tuple[dict[str, int], int, int]:
    """Archival statuses of the ids in `batches`, how many of them a 304 settled (no body
    fetched), and how many ids there were; one batch (a part's items) in memory at a time."""
    counts: Counter[str] = Counter()
    not_modified = total = 0
    for ids in batches:
        total += len(ids)
        with ctx.db.session() as s:
            for i in range(0, len(ids), 500):
                for status, status_id, reason in s.execute(select(Archival.status, Archival.status_id, Archival.reason).where(Archival.resource_id.in_(list(ids[i : i + 500])))):
                    counts[status or "unchecked"] += 1
                    not_modified += status_id == 1 and reason is None
    return dict(counts), not_modified, total


def run_sweep(job: JobRun) -> dict[str, Any]:
    """The sweep_portal job: enumerate the portal, upsert, mark gone, archive what is due."""
    ctx = job.ctx
    portal = get_portal(ctx, job.params["portal"])
    client = client_for(ctx, portal)
    now = utcnow()
    seen: set[str] = set()
    packages = new = changed = analyzed_at = 0
    page: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal new, changed, analyzed_at
        n, c = upsert_portal_resources(ctx, portal.id, page, now)
        new, changed = new + n, changed + c
        page.clear()
        if new - analyzed_at >= ANALYZE_EVERY:
            refresh_statistics(ctx)
            analyzed_at = new

    for pkg in client.iter_packages(include_private=True):
        packages += 1
        rows = resource_rows(pkg)
        seen.update(resource_id_for(portal.id, r["external_id"]) for r in rows)
        page.extend(rows)
        if len(page) >= 500:
            flush()
            job.progress(0, None)
    flush()
    if new >= ANALYZE_EVERY:
        refresh_statistics(ctx)  # the parts look resources up by id too
    readable = client.readable_organizations()
    absence = sweep_gone(ctx, portal.id, seen, now, readable_orgs=readable)
    gone = absence["gone"]
    due = due_ids(ctx, portal.id, now, all_=job.params["recheck"] == "all")
    job.log.info("portal %s: %d datasets, %d resources (%d new, %d changed, %d gone); %d due", portal.name, packages, len(seen), new, changed, gone, len(due))
    if absence["refused"]:
        job.log.warning("portal %s: nothing marked gone: %s", portal.name, absence["refused"])
    state = {
        "portal_id": portal.id, "portal": portal.name, "datasets": packages, "resources": len(seen), "new": new, "changed": changed,
        "gone": gone, "missing": absence["missing"], "unreadable": absence["unreadable"], "gone_refused": absence["refused"],
    }  # the due ids live in the parts only (a portal's first sweep: every resource)
    return parts.fan_out(ctx, job.job_id, due, ctx.settings.archiver_batch_size, state, total=len(due))


def finish_sweep(ctx: Context, job: Job, state: dict[str, Any]) -> dict[str, Any]:
    """The sweep's summary, once every archive part is done; records when the portal was swept."""
    with ctx.db.session() as s:
        p = s.get(Portal, state["portal_id"])
        p.last_swept_at = utcnow()
        p.last_sweep_job_id = job.id
    statuses, not_modified, due = _status_counts(ctx, parts.part_items(ctx, job.id))
    return {
        "portal": state["portal"], "datasets": state["datasets"], "resources": state["resources"], "new": state["new"], "changed": state["changed"],
        "gone": state["gone"], "missing": state.get("missing", 0), "unreadable": state.get("unreadable", 0), "gone_refused": state.get("gone_refused"), "due": due, "checked": sum(n for k, n in statuses.items() if k != "unchecked"), "not_modified": not_modified, "statuses": statuses,
    }


def run_archive_urls(job: JobRun) -> dict[str, Any]:
    """The archive_urls job: upsert ad-hoc resources for the URLs and archive them."""
    ctx = job.ctx
    check_only = job.params["link_check_only"]
    ids = [upsert_url(ctx, url, link_check_only=check_only) for url in job.params["urls"]]
    return parts.fan_out(ctx, job.job_id, ids, ctx.settings.archiver_batch_size, {"ids": ids})


def finish_archive_urls(ctx: Context, job: Job, state: dict[str, Any]) -> dict[str, Any]:
    """Per-URL results, once every archive part is done."""
    ids = state["ids"]
    with ctx.db.session() as s:
        archs = {a.resource_id: a for a in s.scalars(select(Archival).where(Archival.resource_id.in_(ids)))}
    results = []
    for url, rid in zip(job.params["urls"], ids, strict=True):
        a = archs.get(rid)
        results.append({"url": url, "resource_id": rid, "status_id": a.status_id if a else None, "status": a.status if a else None, "reason": a.reason if a else None, "sha256": a.sha256 if a else None, "cache_key": a.cache_key if a else None})
    return {"total": len(ids), "checked": sum(1 for r in results if r["status"] is not None), "results": results}


def inline_dispatcher(ctx: Context, workers: int = 1, fallback: Enqueue | None = None) -> tuple[Enqueue, Callable[[], None]]:
    """An enqueue function that runs archive tasks and fan-out parts in this process (threads),
    for the CLI, tests and benchmarks; other tasks go to `fallback`. Returns (enqueue, shutdown)."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="archive") if workers > 1 else None

    def run(task: str, arg: str) -> None:
        try:
            if task == parts.PART_TASK:
                parts.run_part(ctx, int(arg))
            else:
                archive_resource(ctx, arg, full_record=False)
        except Exception:
            log.exception("archiver: %s %s failed", task, arg)

    def enqueue(task: str, arg: str, queue: str) -> None:
        if task not in (ARCHIVE_TASK, parts.PART_TASK):
            if fallback is None:
                raise RuntimeError(f"no dispatcher for {task}")
            fallback(task, arg, queue)
        elif pool is not None:
            pool.submit(run, task, arg)
        else:
            run(task, arg)

    def shutdown() -> None:
        if pool is not None:
            pool.shutdown(wait=True)

    return enqueue, shutdown


def resweep(ctx: Context) -> dict[str, Any]:
    """The beat entry: a sweep job per registered portal (none while one is active), and
    the due ad-hoc resources (one batch) straight to the archive queue."""
    submitted, skipped = [], []
    with ctx.db.session() as s:
        portals = list(s.scalars(select(Portal).order_by(Portal.name)))
    for portal in portals:
        params = normalize_sweep({"portal": portal.name})
        key = dedupe_key("sweep_portal", params)
        with ctx.db.session() as s:
            active = s.scalar(select(Job.id).where(Job.dedupe_key == key, Job.status.in_(ACTIVE_STATUSES)).limit(1))
        if active:
            skipped.append(portal.name)
            continue
        submitted.append(submit(ctx, "sweep_portal", params, requested_by="beat").id)
    due = due_ids(ctx, None, utcnow())
    with ctx.db.session() as s:
        adhoc = set(s.scalars(select(Resource.id).where(Resource.portal_id.is_(None), Resource.id.in_(due[:10000]))))
    batch = [rid for rid in due if rid in adhoc][: ctx.settings.archiver_batch_size]
    for rid in batch:
        ctx.enqueue(ARCHIVE_TASK, rid, QUEUE)
    return {"sweeps": submitted, "already_running": skipped, "adhoc_enqueued": len(batch)}
