"""Raid records, export runs and archive readers shared by the tests/test_raids_*.py files."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from datetime import UTC, date, datetime, timedelta
from typing import Any

from exporter import jobs, runner
from exporter.models import Job

AGENCY = "https://ror.org/038sjwq14"
OTHER_AGENCY = "https://ror.org/02stey378"
SP = 20000000
SP2 = 20000001
OTHER_SP = 30000000
COAR = "https://vocabularies.coar-repositories.org/access_rights/"


def handle(n: int | str) -> str:
    return f"https://raid.org.au/10378.1/{n}"


def record(
    n: int | str,
    sp: int = SP,
    agency: str = AGENCY,
    access: str = "open",
    expiry: date | None = None,
    title: str | None = None,
    secret: str = "",
    created: int = 1_600_000_000,
) -> dict[str, Any]:
    """A RAiD API record; every private field carries `secret` so tests can look for it."""
    rec: dict[str, Any] = {
        "identifier": {
            "id": handle(n),
            "schemaUri": "https://raid.org/",
            "registrationAgency": {"id": agency, "schemaUri": "https://ror.org/"},
            "owner": {"id": f"https://ror.org/owner{secret}", "schemaUri": "https://ror.org/", "servicePoint": sp},
            "raidAgencyUrl": handle(n),
            "version": 1,
        },
        "title": [{"text": title or f"Title of raid {n} {secret}", "type": {"id": "https://vocabulary.raid.org/title.type.schema/5"}, "startDate": "2020-10-07"}],
        "date": {"startDate": "2020-11-01"},
        "description": [{"text": f"Description {secret}", "type": {"id": "https://vocabulary.raid.org/description.type.schema/318"}}],
        "contributor": [{"id": f"https://orcid.org/0000-0002-4368-{secret or '8058'}", "schemaUri": "https://orcid.org/", "leader": True, "contact": True}],
        "organisation": [{"id": f"https://ror.org/org{secret}", "schemaUri": "https://ror.org/"}],
        "metadata": {"created": created, "updated": created + 100},
    }
    if access == "open":
        rec["access"] = {"type": {"id": COAR + "c_abf2/", "schemaUri": COAR}}
    else:
        rec["access"] = {"type": {"id": COAR + "c_f1cf/", "schemaUri": COAR}, "statement": {"text": "This RAiD is embargoed", "language": {"id": "eng", "schemaUri": "https://www.iso.org/standard/74575.html"}}}
        if expiry is not None:
            rec["access"]["embargoExpiry"] = expiry.isoformat()
    return rec


def today() -> date:
    return datetime.now(UTC).date()


def future(days: int = 30) -> date:
    return today() + timedelta(days=days)


def past(days: int = 30) -> date:
    return today() - timedelta(days=days)


def save(ctx, *records: dict) -> None:
    from exporter.raids.registry import save_raid

    with ctx.db.session() as s:
        for rec in records:
            save_raid(s, rec)


def run_export(ctx, kind: str, params: dict, expect: str = "succeeded") -> Job:
    job = jobs.submit(ctx, kind, params, enqueue=False)
    status = runner.run_job(ctx, job.id)
    done = jobs.get(ctx, job.id)
    assert status == expect, (status, done.error)
    return done


def artifact(job: Job, name: str):
    [art] = [a for a in job.artifacts if a.name == name]
    return art


def archive_members(ctx, job: Job) -> dict[str, bytes]:
    """Every member of the job's archive, by name."""
    art = artifact(job, "archive")
    data = ctx.storage.read_bytes(art.key)
    if art.key.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            assert zf.testzip() is None
            return {n: zf.read(n) for n in zf.namelist()}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers()}


def jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.split(b"\n") if line]


def exported(ctx, job: Job) -> dict[str, dict]:
    """raids.jsonl of the job's archive, by handle."""
    return {r["identifier"]["id"]: r for r in jsonl(archive_members(ctx, job)["raids.jsonl"])}


def public_objects(ctx, job: Job) -> dict[str, bytes]:
    """Every object the job published (archive members, manifest, sitemaps, HTML)."""
    out = {f"archive:{k}": v for k, v in archive_members(ctx, job).items()}
    for art in job.artifacts:
        if art.name != "archive":
            out[art.name] = ctx.storage.read_bytes(art.key)
    return out
