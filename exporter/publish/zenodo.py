"""Publishing a public export to Zenodo: one concept record per agency, a new version per export.

The job `publish_zenodo` (task `exporter.publish_zenodo`, queue `publish`) makes one succeeded
full public export of an agency a version of the agency's Zenodo record: the archive, its
manifest, `SHA256SUMS` and `ro-crate-metadata.json`, with metadata from exporter.publish.metadata.

Exactly once, and resumable: every step is committed to the database as it is reached, so a
run killed anywhere resumes from it.
1. The agency is held (`zenodo_concepts.holder_job_id`, a compare-and-set): one publication
   per agency at a time; another waits (TransientError) until the holder has ended.
2. The export's `zenodo_versions` row (unique per export). An export whose archive sha256, or
   whose records (the sha256 of its .jsonl members), equal the last published version's is
   `unchanged`: nothing is sent.
3. The draft. `creating` is committed before Zenodo is asked for one (POST /records the first
   time, else POST /records/{latest}/versions), the draft's id right after. A run that finds
   `creating` without an id looks for that draft among the user's drafts before asking again,
   so there is never a second draft; a draft left by another, ended publication of this
   agency is deleted first, because Zenodo refuses a second new version while one is open.
4. The metadata, PUT on every run (a new version's draft has no publication_date or version).
5. The files. Zenodo's list of the draft's files is the truth: a file committed with our md5
   is kept, anything else is deleted and sent again; each commit's checksum is compared with
   ours and kept in `zenodo_files`.
6. Every file's checksum is checked once more, `publishing` is committed and the draft is
   published; a run that finds `publishing` first asks whether the record is already out.

`request_publication` and `publication_view` are what the API and the CLI call;
`on_export_final` (a jobs.ON_FINAL hook) asks for a publication when a full public export of
an agency set to publish automatically succeeds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import jobs, submissions
from ..context import Context
from ..db import utcnow
from ..errors import ExporterError, InvalidRequest, JobLost, NotFound, TransientError
from ..models import ACTIVE_STATUSES, Job
from ..raids.crate import CRATE_NAME, SUMS_NAME
from ..raids.latest import latest_public_export
from ..raids.record import ror_id
from ..raids.registry import get_agency
from ..raids.scope import PUBLIC
from ..runner import JobRun
from .client import MAX_FILES, MAX_RECORD_BYTES, ZenodoClient, ZenodoError, configured, require_configured
from .metadata import draft_body, title
from .models import CREATING, DISCARDED, DRAFT, NEW, PUBLISHED, PUBLISHING, UNCHANGED, ZenodoConcept, ZenodoFile, ZenodoVersion

log = logging.getLogger(__name__)

KIND = "publish_zenodo"
# The export's artifacts that become the record's files (their file names are the keys on Zenodo).
FILE_ARTIFACTS = ("archive", "manifest", "sha256sums", "ro-crate")
RECORD_KEYS = ("record_id", "doi", "concept_doi", "version", "record_url")


class PublishError(ExporterError):
    """The publication cannot go on without someone's decision; the message says what to do."""


# -- params and the export to publish ----------------------------------------------------


def normalize(params: dict[str, Any]) -> dict[str, Any]:
    """{agency: short ROR id, export: the id of the export job (default: the newest full public one, found when run)}."""
    agency = params.pop("agency", None)
    if not isinstance(agency, str) or not agency.strip():
        raise InvalidRequest("agency is required (the agency's ROR, e.g. https://ror.org/038sjwq14)", field="agency")
    export = params.pop("export", None)
    if export is not None and (not isinstance(export, str) or not export.strip() or len(export) > 36):
        raise InvalidRequest("export must be the id of a public export job", field="export")
    if params:
        raise InvalidRequest(f"unknown parameter(s): {', '.join(sorted(params))}", field=sorted(params)[0])
    out = {"agency": ror_id(agency)}
    if export:
        out["export"] = export.strip()
    return out


def publishable_export(ctx: Context, agency: str, export_id: str | None = None) -> Job:
    """The export to publish: the one named (checked), or the agency's newest full public export."""
    agency = ror_id(agency)
    if export_id is None:
        job = latest_public_export(ctx, agency)
        if job is None:
            raise NotFound(f"agency {agency} has no succeeded full public export to publish; run `exporter export public --agency {agency}` first")
    else:
        job = jobs.get(ctx, export_id)
        if job.kind != PUBLIC:
            raise InvalidRequest(f"job {export_id} is a {job.kind} job, not a public export", field="export")
        if (job.params or {}).get("agency") != agency:
            raise InvalidRequest(f"export {export_id} is agency {(job.params or {}).get('agency')}'s, not {agency}'s", field="export")
        if job.status != "succeeded":
            raise InvalidRequest(f"export {export_id} has not succeeded (it is {job.status}); only a succeeded export can be published", field="export")
        if (job.result or {}).get("mode") != "full":
            raise InvalidRequest(f"export {export_id} is incremental; only full exports are published", field="export")
        if any(a.deleted_at is not None for a in job.artifacts):
            raise InvalidRequest(f"export {export_id} has expired and its files were deleted; publish a newer export", field="export")
    names = {a.name for a in job.artifacts}
    missing = [n for n in FILE_ARTIFACTS if n not in names]
    if missing:
        raise InvalidRequest(f"export {job.id} has no {', '.join(missing)} (it was made before exports carried SHA256SUMS and an RO-Crate); publish a newer export", field="export")
    return job


def _parts(export: Job) -> list:
    by_name = {a.name: a for a in export.artifacts}
    parts = [by_name[n] for n in FILE_ARTIFACTS]
    if len(parts) > MAX_FILES:
        raise PublishError(f"a Zenodo record holds at most {MAX_FILES} files; this export has {len(parts)}")
    total = sum(a.size for a in parts)
    if total > MAX_RECORD_BYTES:
        raise PublishError(f"a Zenodo record holds at most {MAX_RECORD_BYTES // 10**9} GB; this export's files are {total / 10**9:.1f} GB")
    return parts


def content_sha256(manifest: dict[str, Any]) -> str:
    """A digest of the records an export holds (its .jsonl members), whatever the README, crate or timestamps say."""
    members = sorted((m["name"], m["sha256"]) for m in manifest.get("members", []) if m["name"].endswith(".jsonl"))
    return hashlib.sha256(json.dumps(members).encode()).hexdigest()


def version_of(export: Job) -> str:
    """The version label of an export's record: its UTC timestamp, to the second."""
    generated = (export.result or {}).get("generated_at") or export.created_at.isoformat()
    return generated.replace("+00:00", "Z")[:19] + "Z"


# -- the job -----------------------------------------------------------------------------


def run(job: JobRun) -> dict[str, Any]:
    ctx = job.ctx
    agency = job.params["agency"]
    export = publishable_export(ctx, agency, job.params.get("export"))
    client = ZenodoClient.from_settings(ctx.settings, sleep=lambda seconds: _sleep(job, seconds))
    version_ids: list[int] = []

    def record(status: str, error: str | None, result: dict[str, Any] | None) -> None:
        _record_outcome(ctx, job.job_id, agency, version_ids, status, error, result)

    job.on_outcome(record)
    with holding(ctx, agency, job.job_id):
        version_ids.append(start_version(ctx, job.job_id, export))
        Publication(ctx, job, client, version_ids[0]).run()
    return result_of(ctx, version_ids[0])


def _sleep(job: JobRun, seconds: float) -> None:
    """Wait while the heartbeat thread keeps the job alive; stop at once if the job is lost."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if job.heartbeat is not None and job.heartbeat.lost:
            raise JobLost(f"job {job.job_id} is no longer ours to run")
        time.sleep(min(left, 0.5))


@contextmanager
def holding(ctx: Context, agency: str, job_id: str) -> Iterator[None]:
    """Hold the agency's concept for this job (compare-and-set); TransientError while another live job holds it."""
    try:
        with ctx.db.session() as s:
            if s.get(ZenodoConcept, agency) is None:
                s.add(ZenodoConcept(agency_id=agency))
    except IntegrityError:
        pass  # another job made the row at the same moment
    active = select(Job.id).where(Job.status.in_(ACTIVE_STATUSES), Job.id != job_id)
    free = or_(ZenodoConcept.holder_job_id.is_(None), ZenodoConcept.holder_job_id.not_in(active))
    with ctx.db.session() as s:
        got = s.execute(update(ZenodoConcept).where(ZenodoConcept.agency_id == agency, free).values(holder_job_id=job_id).execution_options(synchronize_session=False)).rowcount
        holder = None if got else s.get(ZenodoConcept, agency).holder_job_id
    if not got:
        raise TransientError(f"agency {agency} is being published to Zenodo by job {holder}; this job waits its turn")
    try:
        yield
    finally:
        with ctx.db.session() as s:
            s.execute(update(ZenodoConcept).where(ZenodoConcept.agency_id == agency, ZenodoConcept.holder_job_id == job_id).values(holder_job_id=None).execution_options(synchronize_session=False))


def last_published(session: Session, agency: str) -> ZenodoVersion | None:
    return session.scalars(
        select(ZenodoVersion).where(ZenodoVersion.agency_id == agency, ZenodoVersion.state == PUBLISHED).order_by(ZenodoVersion.published_at.desc(), ZenodoVersion.id.desc()).limit(1)
    ).first()


def start_version(ctx: Context, job_id: str, export: Job) -> int:
    """The export's version row, made on first sight: `unchanged` if it equals the last published one."""
    agency = export.params["agency"]
    parts = _parts(export)
    manifest = json.loads(ctx.storage.read_bytes(next(a.key for a in parts if a.name == "manifest")))
    archive = next(a for a in parts if a.name == "archive")
    version, content = version_of(export), content_sha256(manifest)
    with ctx.db.session() as s:
        row = s.scalars(select(ZenodoVersion).where(ZenodoVersion.export_job_id == export.id)).first()
        if row is None:
            last = last_published(s, agency)
            row = ZenodoVersion(agency_id=agency, export_job_id=export.id, version=version, archive_sha256=archive.sha256, content_sha256=content)
            if last is not None and (last.archive_sha256 == archive.sha256 or last.content_sha256 == content):
                row.state, row.same_as_id = UNCHANGED, last.id
                for key in ("draft_id", "doi", "concept_doi", "record_url"):
                    setattr(row, key, getattr(last, key))
            else:
                if last is not None and version < last.version:
                    raise PublishError(f"export {export.id} ({version}) is older than the published version {last.version} ({last.doi}); publish a newer export")
                row.state, row.previous_doi = NEW, last.doi if last else None
            s.add(row)
            s.flush()
            if row.state == NEW:
                s.add_all(ZenodoFile(version_id=row.id, key=a.filename, artifact_key=a.key, size=a.size, md5=a.md5, sha256=a.sha256, content_type=a.content_type) for a in parts)
        elif row.state == DISCARDED:
            row.state, row.draft_id, row.error = NEW, None, None
            _forget_commits(s, row.id)
        row.publish_job_id = job_id
        log.info("job %s: export %s is version %s of agency %s (%s)", job_id, export.id, version, agency, row.state)
        return row.id


def _forget_commits(session: Session, version_id: int) -> None:
    session.execute(update(ZenodoFile).where(ZenodoFile.version_id == version_id).values(committed_md5=None, committed_at=None))


def _md5(entry: dict[str, Any] | None) -> str | None:
    checksum = (entry or {}).get("checksum") or ""
    return checksum.removeprefix("md5:") if checksum.startswith("md5:") else None


class Publication:
    """The steps of one version's publication, each resuming from what the database and Zenodo hold."""

    def __init__(self, ctx: Context, job: JobRun, client: ZenodoClient, version_id: int):
        self.ctx, self.job, self.client, self.version_id = ctx, job, client, version_id
        with ctx.db.session() as s:
            self.v = s.get(ZenodoVersion, version_id)
            self.concept = s.get(ZenodoConcept, self.v.agency_id)
            self.files = list(s.scalars(select(ZenodoFile).where(ZenodoFile.version_id == version_id).order_by(ZenodoFile.id)))
            self.agency = get_agency(s, self.v.agency_id)
            self.export = s.get(Job, self.v.export_job_id)
        self.log = logging.LoggerAdapter(log, {"job_id": job.job_id})

    def run(self) -> None:
        if self.v.state in (PUBLISHED, UNCHANGED):
            return
        if self.ensure_draft():
            self.client.update_draft(self.v.draft_id, self.body())
            self.upload_files()
            self.verify_files()
            self.publish()

    # -- state ---------------------------------------------------------------------------

    def save(self, **values: Any) -> None:
        with self.ctx.db.session() as s:
            s.execute(update(ZenodoVersion).where(ZenodoVersion.id == self.version_id).values(**values))
        for key, value in values.items():
            setattr(self.v, key, value)

    def committed(self, f: ZenodoFile, md5: str | None) -> None:
        at = utcnow() if md5 else None
        with self.ctx.db.session() as s:
            s.execute(update(ZenodoFile).where(ZenodoFile.id == f.id).values(committed_md5=md5, committed_at=at))
        f.committed_md5, f.committed_at = md5, at

    def fence(self) -> None:
        """Before a step that changes Zenodo: make sure this run still holds the job's claim."""
        jobs.heartbeat(self.ctx, self.job.job_id, self.job.token)

    def body(self) -> dict[str, Any]:
        archive = next(f for f in self.files if f.key not in ("manifest.json", SUMS_NAME, CRATE_NAME))
        return draft_body(self.agency.name, self.agency.ror, self.export.result or {}, archive.key, self.v.version, self.v.previous_doi, self.ctx.settings, utcnow().date())

    # -- 3. the draft ----------------------------------------------------------------------

    def ensure_draft(self) -> bool:
        """This version's open draft (found, or made once); False when it turns out to be published already."""
        if self.v.draft_id:
            record = self.client.record(self.v.draft_id)
            if record is not None and record.get("is_published", True):
                self.finished(record)
                return False
            if self.client.draft(self.v.draft_id) is not None:
                if self.v.state == CREATING:
                    self.save(state=DRAFT)
                return True
            if self.v.state == PUBLISHING:  # published, perhaps, but not visible yet: never open a second version
                raise TransientError(f"record {self.v.draft_id} was being published and Zenodo shows it neither as a draft nor as a record yet")
            self.log.warning("job %s: draft %s is gone from Zenodo; making a new one", self.job.job_id, self.v.draft_id)
            self.save(draft_id=None, state=NEW)
            with self.ctx.db.session() as s:
                _forget_commits(s, self.version_id)
            for f in self.files:
                f.committed_md5 = None
        if self.v.state == CREATING:
            found = self.find_own_draft()
            if found is not None:
                self.log.info("job %s: found draft %s asked for by an earlier run", self.job.job_id, found["id"])
                self.save(draft_id=str(found["id"]), state=DRAFT)
                return True
        self.create_draft()
        return True

    def find_own_draft(self) -> dict[str, Any] | None:
        """The draft an earlier run asked for and was killed before it could write down."""
        if self.concept.concept_record_id:
            drafts = self.client.drafts(f"parent.id:{self.concept.concept_record_id}")
            drafts = [d for d in drafts if str(d["id"]) not in self.known_drafts()]
        else:
            drafts = self.client.drafts(f'metadata.version:"{self.v.version}"')
            drafts = [d for d in drafts if (d.get("metadata") or {}).get("version") == self.v.version and (d.get("metadata") or {}).get("title") == title(self.agency.name)]
        return drafts[0] if drafts else None

    def known_drafts(self) -> set[str]:
        """Draft ids other versions of this agency have used."""
        with self.ctx.db.session() as s:
            ids = s.scalars(select(ZenodoVersion.draft_id).where(ZenodoVersion.agency_id == self.v.agency_id, ZenodoVersion.id != self.version_id, ZenodoVersion.draft_id.is_not(None)))
            return set(ids)

    def create_draft(self) -> None:
        self.fence()
        self.save(state=CREATING)
        latest = self.concept.latest_record_id
        if latest is None:
            draft = self.client.create_draft(self.body())
        else:
            newest = self.client.latest_version(latest)
            latest = str(newest["id"])
            if self.v.previous_doi is None:  # a record made before Exporter published here (adopted)
                self.save(previous_doi=_doi(newest))
            draft = self.new_version(latest)
        self.save(draft_id=str(draft["id"]), state=DRAFT)
        self.log.info("job %s: draft %s opened for version %s", self.job.job_id, draft["id"], self.v.version)

    def new_version(self, latest: str) -> dict[str, Any]:
        """A new version's draft of our own. Zenodo answers `versions` with the draft already open, whoever opened it
        (or refuses): a draft left by an ended publication of this agency is deleted first, one opened by hand stops the job."""
        self.clear_other_draft()
        for _ in range(2):
            try:
                draft = self.client.new_version(latest)
            except ZenodoError:
                if not self.clear_other_draft():
                    raise
                continue
            if str(draft["id"]) not in self.known_drafts():
                return draft
            self.discard_draft(str(draft["id"]))  # the search did not show it yet; Zenodo handed it back
        raise TransientError(f"Zenodo keeps answering a new version of record {latest} with a draft another export of this agency opened")

    def clear_other_draft(self) -> bool:
        """Delete a new-version draft that an ended publication of this agency left open; False if there is none."""
        if not self.concept.concept_record_id:
            return False
        drafts = self.client.drafts(f"parent.id:{self.concept.concept_record_id}")
        if not drafts:
            return False
        self.discard_draft(str(drafts[0]["id"]))
        return True

    def discard_draft(self, draft_id: str) -> None:
        """Delete the open draft `draft_id` if another, ended publication of this agency opened it; PublishError if Exporter did not."""
        with self.ctx.db.session() as s:
            owner = s.scalars(select(ZenodoVersion).where(ZenodoVersion.agency_id == self.v.agency_id, ZenodoVersion.draft_id == draft_id, ZenodoVersion.id != self.version_id)).first()
            if owner is None or owner.state == PUBLISHED:
                raise PublishError(
                    f"Zenodo holds a draft ({draft_id}) of a new version of record {self.concept.concept_record_id} that Exporter did not open; "
                    "publish or delete it on Zenodo, then run this job again"
                )
            owner_id = owner.id
        self.log.warning("job %s: deleting draft %s left by export %s so this export can be the next version", self.job.job_id, draft_id, owner.export_job_id)
        self.client.delete_draft(draft_id)
        with self.ctx.db.session() as s:
            s.execute(update(ZenodoVersion).where(ZenodoVersion.id == owner_id).values(state=DISCARDED, draft_id=None))

    # -- 5. files --------------------------------------------------------------------------

    def upload_files(self) -> None:
        draft_id = self.v.draft_id
        entries = {e["key"]: e for e in self.client.draft_files(draft_id)}
        ours = {f.key for f in self.files}
        for key in sorted(set(entries) - ours):
            self.client.delete_file(draft_id, key)
        todo = []
        for f in self.files:
            entry = entries.get(f.key)
            if entry is not None and entry.get("status") == "completed" and _md5(entry) == f.md5:
                if f.committed_md5 != f.md5:
                    self.committed(f, f.md5)
                continue
            if entry is not None:
                self.client.delete_file(draft_id, f.key)
            if f.committed_md5:
                self.committed(f, None)
            todo.append(f)
        total = sum(f.size for f in self.files)
        done = total - sum(f.size for f in todo)
        self.job.progress(done, total, force=True)
        if not todo:
            return
        self.fence()
        self.client.start_uploads(draft_id, [f.key for f in todo])
        for f in todo:
            self.client.upload(draft_id, f.key, lambda f=f: self.ctx.storage.open(f.artifact_key), f.size)
            entry = self.commit(draft_id, f)
            got = _md5(entry)
            if got != f.md5:
                self.client.delete_file(draft_id, f.key)
                raise TransientError(f"Zenodo's checksum of {f.key} is md5:{got}, ours md5:{f.md5}: damaged on the way; it is sent again")
            self.committed(f, got)
            done += f.size
            self.job.progress(done, total, force=True)
            self.log.info("job %s: %s committed on Zenodo (md5 %s)", self.job.job_id, f.key, got)

    def commit(self, draft_id: str, f: ZenodoFile) -> dict[str, Any]:
        """Commit an upload; a commit refused because an earlier answer was lost is read back from the file list."""
        try:
            return self.client.commit(draft_id, f.key)
        except ZenodoError:
            entry = next((e for e in self.client.draft_files(draft_id) if e["key"] == f.key), None)
            if entry is None or entry.get("status") != "completed":
                raise
            return entry

    # -- 6. publish ------------------------------------------------------------------------

    def verify_files(self) -> None:
        """Every file on the draft, with Zenodo's checksum equal to ours, and nothing else."""
        entries = {e["key"]: e for e in self.client.draft_files(self.v.draft_id)}
        wrong = [f"{f.key} (Zenodo: {_md5(entries.get(f.key)) or (entries.get(f.key) or {}).get('status', 'missing')}, ours: {f.md5})" for f in self.files if _md5(entries.get(f.key)) != f.md5]
        extra = sorted(set(entries) - {f.key for f in self.files})
        if wrong or extra:
            raise TransientError(f"the draft's files are not ours before publishing: {', '.join(wrong + extra)}; they are sent again")

    def publish(self) -> None:
        self.fence()
        self.save(state=PUBLISHING)
        try:
            record = self.client.publish(self.v.draft_id)
        except ZenodoError:
            self.save(state=DRAFT)
            raise
        self.finished(record)

    def finished(self, record: dict[str, Any]) -> None:
        """Keep the published record's id, DOI and concept DOI (read from Zenodo's answer: the prefixes differ between sandbox and production)."""
        parent = record.get("parent") or {}
        doi, concept_doi = _doi(record), _concept_doi(record) or self.concept.concept_doi
        record_id = str(record["id"])
        url = (record.get("links") or {}).get("self_html")
        self.save(state=PUBLISHED, draft_id=record_id, doi=doi, concept_doi=concept_doi, record_url=url, published_at=utcnow(), error=None)
        with self.ctx.db.session() as s:
            s.execute(
                update(ZenodoConcept)
                .where(ZenodoConcept.agency_id == self.v.agency_id)
                .values(concept_record_id=str(parent.get("id") or self.concept.concept_record_id or record_id), concept_doi=concept_doi, latest_record_id=record_id)
            )
        self.log.info("job %s: published version %s as %s (record %s, concept %s)", self.job.job_id, self.v.version, doi, record_id, concept_doi)


def _doi(record: dict[str, Any]) -> str | None:
    return ((record.get("pids") or {}).get("doi") or {}).get("identifier") or record.get("doi")


def _concept_doi(record: dict[str, Any]) -> str | None:
    return (((record.get("parent") or {}).get("pids") or {}).get("doi") or {}).get("identifier") or record.get("conceptdoi")


# -- what the job returns, and how it ended ------------------------------------------------


def _files(session: Session, version: ZenodoVersion) -> list[dict[str, Any]]:
    source = version.same_as_id if version.state == UNCHANGED and version.same_as_id else version.id
    rows = session.scalars(select(ZenodoFile).where(ZenodoFile.version_id == source).order_by(ZenodoFile.id))
    return [{"key": f.key, "size": f.size, "md5": f.md5, "sha256": f.sha256, "content_type": f.content_type} for f in rows]


def result_of(ctx: Context, version_id: int) -> dict[str, Any]:
    """The job's result: the record this export is on Zenodo (its own, or the equal one already there)."""
    with ctx.db.session() as s:
        v = s.get(ZenodoVersion, version_id)
        out = {
            "status": "unchanged" if v.state == UNCHANGED else "published",
            "agency": v.agency_id,
            "export_job_id": v.export_job_id,
            "record_id": v.draft_id,
            "doi": v.doi,
            "concept_doi": v.concept_doi,
            "version": v.version,
            "record_url": v.record_url,
            "previous_doi": v.previous_doi,
            "files": _files(s, v),
        }
        if v.state == UNCHANGED and v.same_as_id:
            out["version"] = s.get(ZenodoVersion, v.same_as_id).version
            out["unchanged_export_version"] = v.version
        return out


def _record_outcome(ctx: Context, job_id: str, agency: str, version_ids: list[int], status: str, error: str | None, result: dict[str, Any] | None) -> None:
    try:
        with ctx.db.session() as s:
            if version_ids and error:
                s.execute(update(ZenodoVersion).where(ZenodoVersion.id == version_ids[0]).values(error=error[:4000]))
            summary = {k: result.get(k) for k in ("status", *RECORD_KEYS)} if result else None
            jobs.record_task_status(s, "registration_agency", agency, KIND, "cancelled" if status == "lost" else status, error=error, value=summary, job_id=job_id)
    except Exception:
        log.exception("job %s: could not record the publication's outcome", job_id)


# -- for the API, the CLI and the pages ----------------------------------------------------


def request_publication(
    ctx: Context, agency: str, export_job_id: str | None = None, requested_by: str | None = None, description: str | None = None, callback_urls=(), enqueue: bool = True
) -> Job:
    """Ask for the publication of an export (default: the agency's newest full public one); an equal request joins the job there."""
    require_configured(ctx.settings)
    with ctx.db.session() as s:
        get_agency(s, agency)
    export = publishable_export(ctx, agency, export_job_id)
    params = {"agency": ror_id(agency), "export": export.id}
    return submissions.request_job(ctx, KIND, params, requested_by=requested_by, description=description, callback_urls=callback_urls, enqueue=enqueue).job


def publication_view(job: Job) -> dict[str, Any]:
    """A publish job as the API shows it: its status and, once done, the record, DOIs, files and links."""
    result = job.result if job.status == "succeeded" and job.result else {}
    status = result.get("status", "published") if job.status == "succeeded" else job.status
    params = job.params or {}
    view: dict[str, Any] = {
        "id": job.id,
        "status": status,
        "agency": params.get("agency"),
        "export_job_id": result.get("export_job_id") or params.get("export"),
        **{k: result.get(k) for k in RECORD_KEYS},
        "files": result.get("files", []),
        "links": links(result),
        "error": job.error if job.status == "failed" else None,
        "errorReason": job.error if job.status == "failed" else None,  # the name the exports API and the webhooks use
        "created_at": _iso(job.created_at),
        "finished_at": _iso(job.finished_at),
    }
    return view


def links(record: dict[str, Any]) -> dict[str, str | None]:
    """Where a reader finds the record: its page, its DOI and the concept DOI (always the newest version)."""
    def doi_url(doi: str | None) -> str | None:
        return f"https://doi.org/{doi}" if doi else None

    return {"record": record.get("record_url"), "doi": doi_url(record.get("doi")), "concept_doi": doi_url(record.get("concept_doi"))}


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def publication_of_export(ctx: Context, export_job_id: str) -> dict[str, Any] | None:
    """How an export stands on Zenodo (for its job page), or None if it was never sent."""
    with ctx.db.session() as s:
        v = s.scalars(select(ZenodoVersion).where(ZenodoVersion.export_job_id == export_job_id)).first()
        if v is None:
            return None
        record = {"state": v.state, "version": v.version, "record_id": v.draft_id if v.state in (PUBLISHED, UNCHANGED) else None, "doi": v.doi, "concept_doi": v.concept_doi, "record_url": v.record_url, "publish_job_id": v.publish_job_id, "error": v.error}
    record["links"] = links(record)
    return record


def set_auto_publish(ctx: Context, agency: str, on: bool) -> ZenodoConcept:
    """Publish the agency's every successful full public export (nightly included) automatically, or stop."""
    with ctx.db.session() as s:
        short = get_agency(s, agency).id
        concept = s.get(ZenodoConcept, short)
        if concept is None:
            concept = ZenodoConcept(agency_id=short)
            s.add(concept)
        concept.auto_publish = on
        s.flush()
        return concept


def adopt_record(ctx: Context, agency: str, record_id: str) -> ZenodoConcept:
    """Continue a Zenodo record made before Exporter (by hand): the agency's next export becomes its next version."""
    client = ZenodoClient.from_settings(ctx.settings)
    record = client.record(record_id)
    if record is None:
        raise NotFound(f"Zenodo has no published record {record_id}")
    with ctx.db.session() as s:
        short = get_agency(s, agency).id
        if last_published(s, short) is not None:
            raise InvalidRequest(f"agency {short} already publishes to Zenodo record {s.get(ZenodoConcept, short).concept_record_id}; it cannot adopt another", field="record")
        concept = s.get(ZenodoConcept, short) or ZenodoConcept(agency_id=short)
        s.add(concept)
        concept.concept_record_id = str((record.get("parent") or {}).get("id") or record_id)
        concept.concept_doi = _concept_doi(record)
        concept.latest_record_id = str(record["id"])
        s.flush()
        return concept


def concept_of(ctx: Context, agency: str) -> tuple[ZenodoConcept | None, list[ZenodoVersion]]:
    """The agency's concept record and its versions, newest first."""
    with ctx.db.session() as s:
        short = get_agency(s, agency).id
        versions = list(s.scalars(select(ZenodoVersion).where(ZenodoVersion.agency_id == short).order_by(ZenodoVersion.created_at.desc(), ZenodoVersion.id.desc())))
        return s.get(ZenodoConcept, short), versions


def on_export_final(ctx: Context, session: Session, job_id: str, status: str):
    """jobs.ON_FINAL hook: a full public export of an agency set to publish automatically asks for its publication.

    The publish job is written in the export's own final transaction (a savepoint, so nothing
    here can undo the export's success), and sent to the broker after the commit.
    """
    if status != "succeeded":
        return None
    row = session.execute(select(Job.kind, Job.params, Job.result).where(Job.id == job_id)).first()
    if row is None or row.kind != PUBLIC or (row.result or {}).get("mode") != "full":
        return None
    agency = (row.params or {}).get("agency")
    concept = session.get(ZenodoConcept, agency) if agency else None
    if concept is None or not concept.auto_publish:
        return None
    if not configured(ctx.settings):
        log.warning("job %s: agency %s publishes to Zenodo automatically, but EXPORTER_ZENODO_URL or EXPORTER_ZENODO_TOKEN is not set", job_id, agency)
        return None
    params = {"agency": agency, "export": job_id}
    try:
        with session.begin_nested():
            job = jobs.new_job(KIND, params, requested_by="auto-publish", description=f"Zenodo publication of export {job_id}")
            session.add(job)
    except Exception:
        log.exception("job %s: could not ask for its Zenodo publication; publish it with `exporter publish zenodo --agency %s --export %s`", job_id, agency, job_id)
        return None
    log.info("job %s: agency %s publishes automatically: publish job %s", job_id, agency, job.id)
    return lambda: jobs.dispatch(ctx, job)
