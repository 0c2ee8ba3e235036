"""Public and private exports of raids: keyset-paged, streamed into an archive, verifiable.

A public export covers one registration agency: open raids (and embargoed ones whose
embargo has passed) in full, every other raid reduced to the allowlist in
exporter.raids.public. A private export covers one service point, in full. Both read one
consistent snapshot of the database a page at a time (keyset pagination, never OFFSET)
and stream the records into `raids.jsonl` inside the archive, which flows on to storage.

Incremental mode exports only the raids whose (updated_at, id) lies after the watermark
of the last successful export of the same scope, plus deletions as tombstones; a public
incremental also republishes raids whose embargo expired since that export.

The watermark is internal: it names a raid's id and change time, and that raid may be
closed, embargoed or deleted. It stays in the job's result (the database); the manifests
publish only the export's time window (`window`: changes after the previous export's
cutoff, up to this one's), which is all a reader needs to resume from the next export.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Text, and_, case, cast, func, null, select
from sqlalchemy.orm import Session

from .. import jobs
from ..context import Context
from ..db import utcnow
from ..kinds import get_kind
from ..models import Artifact, Job
from ..runner import JobRun
from .archive import FORMATS, ArchiveWriter
from .crate import CRATE_NAME, CRATE_TYPE, SUMS_NAME, About, Part, ro_crate, sha256sums, summary
from .latest import latest_url
from .models import Raid, RegistrationAgency
from .public import public_json, published_in_full, published_in_full_sql, redacted
from .reading import Watermark, _iso, _parse_iso, keyset_pages, snapshot
from .scope import PRIVATE, PUBLIC, Scope
from .sitemaps import write_search_index

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
REDACTED_SIZE = 330  # bytes of a redacted record, for estimates
COMPRESSION_RATIO = 0.25  # archive bytes per raids.jsonl byte at the default level, measured


@dataclass
class Previous:
    job_id: str
    finished_at: datetime | None
    as_of: datetime
    watermark: Watermark | None
    cutoff: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """What a manifest may say about the export this one follows: no watermark."""
        return {"job_id": self.job_id, "finished_at": _iso(self.finished_at), "as_of": _iso(self.as_of)}


def previous_export(session: Session, scope: Scope) -> Previous | None:
    """The last successful export of the same scope (either mode), if any."""
    key = Job.params[scope.param]
    cond = key.as_string() == scope.id if scope.public else key.as_integer() == int(scope.id)
    job = session.scalars(
        select(Job).where(Job.kind == scope.kind, Job.status == "succeeded", cond).order_by(Job.finished_at.desc(), Job.id.desc()).limit(1)
    ).first()
    if job is None or not job.result or "as_of" not in job.result:
        return None
    cutoff = job.result.get("cutoff")
    return Previous(job.id, job.finished_at, _parse_iso(job.result["as_of"]), Watermark.from_dict(job.result.get("watermark")), _parse_iso(cutoff) if cutoff else None)


def _columns(scope: Scope, as_of: date, order: str, tombstones: bool) -> list:
    """What a pass selects: no more than its lines need (every column costs per row)."""
    keys = [Raid.id, Raid.updated_at] if order == "updated" else [Raid.id]
    if tombstones:
        return [*keys, Raid.handle, Raid.deleted_at]
    text = cast(Raid.record, Text)
    cols = [*keys, Raid.handle, Raid.access_type, Raid.embargo_expiry]
    if not scope.public:
        return [*cols, text.label("text")]
    # Defence in depth: the database hands over no JSON of a raid that is not public.
    public = published_in_full_sql(as_of)
    return [
        *cols,
        public_json(as_of).label("text"),
        Raid.access_statement,
        Raid.access_statement_language,
        case((public, null()), else_=Raid.created_at).label("created_at"),
    ]


@dataclass
class Plan:
    """What one export reads: the passes, their filters, and the numbers for the manifest."""

    scope: Scope
    mode: str
    requested_mode: str
    as_of: datetime
    cutoff: datetime
    previous: Previous | None

    @property
    def as_of_date(self) -> date:
        return self.as_of.date()

    def live(self):
        return and_(self.scope.condition(), Raid.deleted_at.is_(None))

    def window(self) -> dict[str, str | None]:
        """The public bounds of the changes covered: after the previous export's cutoff (None: from the start), up to this one's."""
        after = self.previous.cutoff if self.mode == "incremental" and self.previous else None
        return {"changes_after": _iso(after), "changes_up_to": _iso(self.cutoff)}

    def changed(self):
        conds = [self.scope.condition(), Raid.updated_at <= self.cutoff]
        if self.previous and self.previous.watermark:
            conds.append(self.previous.watermark.after())
        return and_(*conds)

    def newly_expired(self):
        """Public incremental: embargoes that ended since the previous export, not already changed."""
        prev = self.previous
        conds = [self.live(), Raid.access_type == "embargoed", Raid.embargo_expiry >= prev.as_of.date(), Raid.embargo_expiry < self.as_of_date]
        if prev.watermark:
            conds.append(prev.watermark.not_after())
        return and_(*conds)

    def passes(self) -> list[tuple[str, Any, str]]:
        """(member, condition, keyset order) for every pass, in archive order."""
        if self.mode == "full":
            return [("raids.jsonl", self.live(), "id")]
        out = [("raids.jsonl", and_(self.changed(), Raid.deleted_at.is_(None)), "updated")]
        if self.scope.public:
            out.append(("raids.jsonl", self.newly_expired(), "id"))
        out.append(("tombstones.jsonl", and_(self.changed(), Raid.deleted_at.is_not(None)), "updated"))
        return out


def make_plan(session: Session, scope: Scope, params: dict[str, Any], settle_seconds: float, as_of: datetime | None = None) -> Plan:
    as_of = as_of or utcnow()
    previous = previous_export(session, scope) if params["mode"] == "incremental" else None
    mode = "incremental" if previous is not None else "full"
    return Plan(scope, mode, params["mode"], as_of, as_of - timedelta(seconds=settle_seconds), previous)


def _count(conn: Connection, cond) -> int:
    return conn.execute(select(func.count()).select_from(Raid).where(cond)).scalar_one()


def _watermark(conn: Connection, plan: Plan) -> Watermark | None:
    """The newest (updated_at, id) in scope up to the cutoff, deletions included."""
    cond = and_(plan.scope.condition(), Raid.updated_at <= plan.cutoff)
    row = conn.execute(select(Raid.updated_at, Raid.id).where(cond).order_by(Raid.updated_at.desc(), Raid.id.desc()).limit(1)).first()
    if row is None:
        return plan.previous.watermark if plan.previous else None
    return Watermark(row.updated_at, row.id)


# -- records -------------------------------------------------------------------------------


def _record_line(row, public: bool, as_of: date) -> bytes:
    if public and not published_in_full(row.access_type, row.embargo_expiry, as_of):
        record = redacted(row.handle, row.created_at, row.access_type, row.access_statement, row.access_statement_language, row.embargo_expiry)
        return json.dumps(record, separators=(",", ":")).encode()  # ASCII: no U+2028 and kin to split lines
    text = row.text
    if text is None:
        raise RuntimeError(f"raid {row.handle}: the database withheld the record of a raid the export would publish in full")
    if "\n" in text or "\r" in text:  # stored pretty-printed by raw SQL; one line per record
        text = json.dumps(json.loads(text))
    return text.encode()


def _counts(conn: Connection, plan: Plan) -> dict[str, Any]:
    """Records by access type, and how many go out in full or redacted, read from the snapshot."""
    counts: dict[str, Any] = {"records": 0, "tombstones": 0, "by_access_type": {}, "in_full": 0, "redacted": 0}
    full = published_in_full_sql(plan.as_of_date) if plan.scope.public else Raid.id.is_not(None)
    for name, cond, _ in plan.passes():
        if name == "tombstones.jsonl":
            counts["tombstones"] += _count(conn, cond)
            continue
        for access_type, n, n_full in conn.execute(select(Raid.access_type, func.count(), func.count().filter(full)).where(cond).group_by(Raid.access_type)):
            counts["by_access_type"][access_type] = counts["by_access_type"].get(access_type, 0) + n
            counts["records"] += n
            counts["in_full"] += n_full
            counts["redacted"] += n - n_full
    counts["by_access_type"] = dict(sorted(counts["by_access_type"].items()))
    return counts


def _tombstone_line(row) -> bytes:
    return json.dumps({"identifier": {"id": row.handle}, "deleted": True, "deletedAt": _iso(row.deleted_at)}, separators=(",", ":")).encode()


README = """\
# RAiD {kind_title}: {scope_type} {scope_id}

Generated {generated_at} by Exporter (job {job_id}); mode: {mode}.

- `raids.jsonl`: one raid a line, RAiD API JSON, in a stable order ({order}).
{public_note}{tombstone_note}- `ro-crate-metadata.json`: an RO-Crate 1.2 description of these files (size, type, sha256).
- `manifest.json`: job, scope, mode, counts by access type, the time window of the
  changes it covers, the export it follows (incremental), and the size and sha256 of every member.

Verify: `unzip -t` (or `tar -tzf`) the archive, extract it, and compare `sha256sum` of each
member with the manifest. The manifest stored beside the archive also carries the
archive's own size and sha256, and `SHA256SUMS` beside it checks both with
`sha256sum -c SHA256SUMS`.
"""

PUBLIC_NOTE = """\
  Open raids, and embargoed raids whose embargo expired before {as_of}, appear in full.
  Any other raid shows only its handle, create date and access block (type, statement,
  embargo expiry).
"""

TOMBSTONE_NOTE = "- `tombstones.jsonl`: raids deleted since the previous export (handle and time).\n"


def _readme(job: JobRun, plan: Plan, generated_at: datetime) -> bytes:
    scope = plan.scope
    return README.format(
        kind_title="public export" if scope.public else "private export",
        scope_type=scope.entity_type.replace("_", " "),
        scope_id=scope.id,
        generated_at=_iso(generated_at),
        job_id=job.job_id,
        mode=plan.mode,
        order="by id" if plan.mode == "full" else "changes by (updated_at, id), then expired embargoes by id",
        public_note=PUBLIC_NOTE.format(as_of=plan.as_of_date.isoformat()) if scope.public else "",
        tombstone_note=TOMBSTONE_NOTE if plan.mode == "incremental" else "",
    ).encode()


# -- the job -------------------------------------------------------------------------------


def build_export(job: JobRun, scope: Scope) -> dict[str, Any]:
    """Write the archive, its manifest and (public) the search index; returns the job result."""
    ctx, params, settings = job.ctx, job.params, job.settings
    page_size = settings.export_page_size
    generated_at = utcnow()
    with ctx.db.session() as s:
        owner = scope.owner(s)
        scope = scope.resolve(s)
        plan = make_plan(s, scope, params, settings.export_settle_seconds, as_of=generated_at)
    prefix = scope.prefix(f"{job.timestamp}-{job.job_id[:8]}-{job.run_id}")  # one per job and run, even within a second
    archive_name, content_type = FORMATS[params["format"]]
    with snapshot(ctx) as conn:
        passes = plan.passes()
        counts = _counts(conn, plan)
        total = counts["records"] + counts["tombstones"]
        watermark = _watermark(conn, plan)
        about = _about(plan, owner, counts, generated_at, archive_name, settings)
        job.progress(0, total, force=True)
        with job.artifact("archive", prefix + archive_name, public=scope.public, content_type=content_type) as fh:
            writer = ArchiveWriter(fh, params["format"], settings.export_compress_level, generated_at)
            try:
                manifest = _write_members(job, conn, plan, writer, passes, counts, total, generated_at, page_size, about)
            except BaseException:
                writer.abort()
                raise
            writer.close()
        info = fh.info
        search_index = None
        if scope.public and params.get("sitemaps", True):
            search_index = write_search_index(job, conn, scope, prefix, plan.as_of_date, archive_name)
    archive = {"key": prefix + archive_name, "name": archive_name, "size": info.size, "sha256": info.sha256, "md5": info.md5}
    outer = dict(manifest, archive=archive)
    if search_index:
        outer["search_index"] = search_index
    manifest_art = job.add_artifact("manifest", prefix + "manifest.json", json.dumps(outer, indent=2).encode() + b"\n", public=scope.public, content_type="application/json")
    _add_checksums_and_crate(job, prefix, about, [Part(archive_name, info.size, info.sha256, content_type), Part("manifest.json", manifest_art.size, manifest_art.sha256, "application/json")])
    job.progress(counts["records"] + counts["tombstones"], total, force=True)
    log.info("job %s: %s export of %s %s: %d records, %d tombstones", job.job_id, plan.mode, scope.entity_type, scope.id, counts["records"], counts["tombstones"])
    return {
        "scope": scope.to_dict(),
        "mode": plan.mode,
        "requested_mode": plan.requested_mode,
        "as_of": _iso(plan.as_of),
        "generated_at": _iso(generated_at),
        "watermark": watermark.to_dict() if watermark else None,
        "cutoff": _iso(plan.cutoff),
        "follows": plan.previous.job_id if plan.previous else None,
        "counts": counts,
        "archive": archive,
        "manifest_key": prefix + "manifest.json",
        "search_index": search_index,
    }


def _about(plan: Plan, owner: tuple[str, str | None], counts: dict[str, Any], generated_at: datetime, archive_name: str, settings) -> About:
    """What the export's RO-Crates say about it (a public export's summary; a private one's scope)."""
    scope = plan.scope
    if scope.public:
        paragraphs = summary(owner[0], owner[1], counts, plan.window(), plan.as_of_date.isoformat(), archive_name)
        if plan.mode == "full":
            paragraphs.append(f"The newest full export is always at {latest_url(settings, scope.id)}.")
        name = f"RAiD public export of {owner[0]}"
    else:
        paragraphs = [f"Private export of every raid of service point {scope.id} ({owner[0]}), in full; not for publication."]
        name = f"RAiD private export of service point {scope.id}"
    if plan.mode == "incremental":
        paragraphs.append("Incremental: only the raids changed since the previous export, and tombstones for those deleted.")
    return About(name, " ".join(paragraphs), _iso(generated_at), owner[0], owner[1], public=scope.public)


def _add_checksums_and_crate(job: JobRun, prefix: str, about: About, parts: list[Part]) -> None:
    """SHA256SUMS of the archive and manifest, then the folder's RO-Crate describing all three."""
    public = about.public
    sums = job.add_artifact("sha256sums", prefix + SUMS_NAME, sha256sums(parts), public=public, content_type="text/plain")
    parts = [*parts, Part(SUMS_NAME, sums.size, sums.sha256, "text/plain")]
    job.add_artifact("ro-crate", prefix + CRATE_NAME, ro_crate(about, parts), public=public, content_type=CRATE_TYPE)


def _write_members(job: JobRun, conn: Connection, plan: Plan, writer: ArchiveWriter, passes, counts: dict, total: int, generated_at: datetime, page_size: int, about: About) -> dict[str, Any]:
    """Stream every pass into its member, then the README, the RO-Crate and the manifest; returns the manifest."""
    scope, params = plan.scope, job.params
    done = 0
    for member_name in dict.fromkeys(name for name, _, _ in passes):
        with writer.member(member_name) as member:
            for name, cond, order in passes:
                if name != member_name:
                    continue
                tombstones = name == "tombstones.jsonl"
                columns = _columns(scope, plan.as_of_date, order, tombstones)
                for rows in keyset_pages(conn, select(*columns).where(cond), order, page_size):
                    if tombstones:
                        lines = [_tombstone_line(r) for r in rows]
                    else:
                        lines = [_record_line(r, scope.public, plan.as_of_date) for r in rows]
                    member.write(b"\n".join(lines) + b"\n")
                    done += len(rows)
                    job.progress(done, total)
    writer.add("README.md", _readme(job, plan, generated_at))
    writer.add(CRATE_NAME, ro_crate(about, [Part.member(m) for m in writer.members]))
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "kind": scope.kind,
        "job_id": job.job_id,
        "scope": scope.to_dict(),
        "mode": plan.mode,
        "requested_mode": plan.requested_mode,
        "format": params["format"],
        "generated_at": _iso(generated_at),
        "as_of": _iso(plan.as_of),
        "window": plan.window(),
        "follows": plan.previous.to_dict() if plan.previous else None,
        "counts": counts,
        "members": list(writer.members),
    }
    writer.add("manifest.json", json.dumps(manifest, indent=2).encode() + b"\n")
    return manifest


def _record_outcome(job: JobRun, scope: Scope, state: str, error: str | None = None, value: dict | None = None) -> None:
    try:
        with job.ctx.db.session() as s:
            jobs.record_task_status(s, scope.entity_type, scope.id, scope.kind, state, error=error, value=value, job_id=job.job_id)
    except Exception:
        log.exception("job %s: could not record the export's outcome", job.job_id)


def run(job: JobRun) -> dict[str, Any]:
    """The body of both export kinds; a task_status row records how the run ended, once it has."""
    scope = Scope.of(job.job.kind, job.params)

    def record(status: str, error: str | None, result: dict[str, Any] | None) -> None:
        summary = {k: result[k] for k in ("mode", "watermark", "counts", "manifest_key")} if result else None
        _record_outcome(job, scope, "cancelled" if status == "lost" else status, error, summary)

    job.on_outcome(record)
    return build_export(job, scope)


# -- for the API and the CLI ---------------------------------------------------------------


def request_export(ctx: Context, kind: str, params: dict[str, Any], requested_by: str | None = None, enqueue: bool = True) -> Job:
    """Check the scope exists and submit an export job (what the web API calls)."""
    spec = get_kind(kind)
    params = spec.normalize(dict(params))
    with ctx.db.session() as s:
        Scope.of(kind, params).check(s)
    return jobs.submit(ctx, kind, params, requested_by=requested_by, enqueue=enqueue)


def estimate_size(ctx: Context, kind: str, params: dict[str, Any]) -> int:
    """Roughly how many bytes the export of this scope will store (archive + search index)."""
    params = get_kind(kind).normalize(dict(params))
    scope = Scope.of(kind, params)
    as_of = utcnow()
    with ctx.db.session() as s:
        scope.check(s)
        scope = scope.resolve(s)
        plan = make_plan(s, scope, params, ctx.settings.export_settle_seconds, as_of=as_of)
        cond = plan.live() if plan.mode == "full" else and_(plan.changed(), Raid.deleted_at.is_(None))
        full_cond = published_in_full_sql(plan.as_of_date) if scope.public else Raid.id.is_not(None)
        n_full, n_redacted = s.execute(
            select(func.count().filter(full_cond), func.count().filter(~full_cond)).select_from(Raid).where(cond)
        ).one()
        sample = select(func.length(cast(Raid.record, Text)).label("n")).where(plan.live()).order_by(Raid.id.desc()).limit(200).subquery()
        avg = s.execute(select(func.avg(sample.c.n))).scalar() or 0
        n_search = s.execute(select(func.count()).select_from(Raid).where(plan.live())).scalar_one() if scope.public and params.get("sitemaps", True) else 0
    jsonl = int(n_full * float(avg) + (n_redacted or 0) * REDACTED_SIZE)
    return int(jsonl * COMPRESSION_RATIO) + n_search * 250 + 16384


def download_links(ctx: Context, job_id: str, expires_in: int | None = None) -> dict[str, str]:
    """Expiring download URLs for every artifact of a finished export (how private exports are reached)."""
    expires_in = expires_in or ctx.settings.download_url_ttl
    with ctx.db.session() as s:
        arts = s.scalars(select(Artifact).where(Artifact.job_id == job_id, Artifact.deleted_at.is_(None)).order_by(Artifact.id)).all()
    return {a.name: ctx.storage.download_url(a.key, expires_in, a.filename) for a in arts}


def agencies(ctx: Context) -> list[str]:
    with ctx.db.session() as s:
        return list(s.scalars(select(RegistrationAgency.id).order_by(RegistrationAgency.id)))


def submit_public_exports(ctx: Context, mode: str = "full", requested_by: str = "schedule") -> list[Job]:
    """Submit a public export for every registration agency (the nightly run)."""
    return [jobs.submit(ctx, PUBLIC, {"agency": a, "mode": mode}, requested_by=requested_by) for a in agencies(ctx)]


__all__ = ["PRIVATE", "PUBLIC", "build_export", "download_links", "estimate_size", "request_export", "run", "submit_public_exports"]
