# ruff: noqa: F811 - fixtures come from tests.archiver_fixtures
"""WARC output: each archiving part writes WARC/1.1 records of what it fetched, with a CDXJ index,
and warcio reads them back matching the stored copies; a sweep with nothing changed writes revisits."""

from __future__ import annotations

import hashlib
import io
import json
import uuid

import pytest
from cdxj_indexer.main import write_cdx_index
from sqlalchemy import select
from warcio.archiveiterator import ArchiveIterator

from exporter import cleanup
from exporter.archiver.models import ArchiveVersion, Resource, WarcFile
from exporter.archiver.portals import add_portal
from exporter.archiver.warc import IDENTICAL_PAYLOAD, SERVER_NOT_MODIFIED, payload_digest
from tests.archiver_fixtures import actx, nginx  # noqa: F401
from tests.http_servers import FakeCKAN, ckan_package
from tests.test_archiver_sweep import run_sweep

FILES = 6


@pytest.fixture
def portal(actx, nginx):
    run = uuid.uuid4().hex[:6]
    packages = []
    for i in range(FILES):
        name = f"w{run}-{i}"
        (nginx.root / f"{name}.csv").write_bytes(f"warc,{i}\n".encode() * (i + 1))
        packages.append(ckan_package(name, "org", [(f"{name}-r", f"{nginx.url}/{name}.csv")]))
    site = FakeCKAN(packages).start()
    actx.settings = actx.settings.replace(archiver_batch_size=4)  # two parts, so two WARC files
    add_portal(actx, f"warc-{run}", site.url)
    yield f"warc-{run}"
    site.stop()


def indexed_by_cdxj_indexer(data: bytes, filename: str) -> list[str]:
    """What webrecorder's cdxj-indexer writes for a WARC file (our index is made while writing)."""
    out = io.StringIO()
    write_cdx_index(out, [io.BytesIO(data)], {"filename": filename, "sort": True})
    return out.getvalue().splitlines()


def records(ctx, job_id: str) -> tuple[list, list[WarcFile]]:
    with ctx.db.session() as s:
        files = list(s.scalars(select(WarcFile).where(WarcFile.job_id == job_id).order_by(WarcFile.key)))
    out = []
    for f in files:
        assert f.key.startswith("warc/") and f.key.endswith(".warc.gz")
        data = ctx.storage.read_bytes(f.key)
        assert hashlib.sha256(data).hexdigest() == f.sha256
        for rec in ArchiveIterator(io.BytesIO(data)):
            out.append((rec.rec_type, rec.rec_headers, rec.http_headers, rec.content_stream().read(), f))
    return out, files


def test_a_sweep_writes_warc_records_that_match_the_stored_copies(actx, portal):
    job = run_sweep(actx, portal)
    got, files = records(actx, job.id)
    assert len(files) == 2 and sum(f.records for f in files) == 2 * FILES
    with actx.db.session() as s:
        stored = {r.url: v.sha256 for r, v in s.execute(select(Resource, ArchiveVersion).join(ArchiveVersion, ArchiveVersion.resource_id == Resource.id).where(Resource.package_name.like(f"{portal[5:]}%") | Resource.url.like(f"%w{portal[5:]}-%")))}
    responses = [g for g in got if g[0] == "response"]
    requests_ = [g for g in got if g[0] == "request"]
    assert len(responses) == len(requests_) == FILES and {g[0] for g in got} == {"warcinfo", "response", "request"}
    for _, headers, http, body, _ in responses:
        url = headers.get_header("WARC-Target-URI")
        assert hashlib.sha256(body).hexdigest() == stored[url], url
        assert headers.get_header("WARC-Payload-Digest") == payload_digest(stored[url])
        assert http.get_statuscode() == "200" and http.get_header("Content-Length") == str(len(body))
    concurrent = {g[1].get_header("WARC-Concurrent-To") for g in requests_}
    assert concurrent == {g[1].get_header("WARC-Record-ID") for g in responses}
    for f in files:  # the CDXJ index: one sorted line per response, pointing at its record
        lines = actx.storage.read_bytes(f.index_key).decode().splitlines()
        assert len(lines) == f.records // 2 and lines == sorted(lines)
        data = actx.storage.read_bytes(f.key)
        assert lines == indexed_by_cdxj_indexer(data, f.key.rsplit("/", 1)[1])
        for line in lines:
            surt, stamp, fields = line.split(" ", 2)
            entry = json.loads(fields)
            rec = next(iter(ArchiveIterator(io.BytesIO(data[int(entry["offset"]) : int(entry["offset"]) + int(entry["length"])]))))
            assert rec.rec_headers.get_header("WARC-Target-URI") == entry["url"] and entry["status"] == "200" and len(stamp) == 14


def test_a_second_sweep_writes_revisits_and_cleanup_keeps_the_named_files(actx, portal):
    run_sweep(actx, portal)
    again = run_sweep(actx, portal, recheck="all")
    got, files = records(actx, again.id)
    revisits = [g for g in got if g[0] == "revisit"]
    assert len(revisits) == FILES and {g[1].get_header("WARC-Profile") for g in revisits} <= {SERVER_NOT_MODIFIED, IDENTICAL_PAYLOAD}
    assert all(g[2].get_statuscode() == "304" for g in revisits if g[1].get_header("WARC-Profile") == SERVER_NOT_MODIFIED)
    assert not [g for g in got if g[0] == "response"]
    for f in files:
        lines = actx.storage.read_bytes(f.index_key).decode().splitlines()
        assert len(lines) == f.records and lines == indexed_by_cdxj_indexer(actx.storage.read_bytes(f.key), f.key.rsplit("/", 1)[1])
        assert all(json.loads(line.split(" ", 2)[2])["mime"] == "warc/revisit" for line in lines)
    cleanup.run(actx, orphan_grace_seconds=0)
    for f in files:
        assert actx.storage.stat(f.key) is not None and actx.storage.stat(f.index_key) is not None
    actx.storage.write("warc/stray/20260101T000000Z-00000-abcdef.warc.gz", b"left by a killed part")
    cleanup.run(actx, orphan_grace_seconds=0)
    assert actx.storage.stat("warc/stray/20260101T000000Z-00000-abcdef.warc.gz") is None


def test_warc_writing_can_be_switched_off(actx, portal):
    actx.settings = actx.settings.replace(archiver_warc=False)
    job = run_sweep(actx, portal)
    assert records(actx, job.id) == ([], []) and job.result["statuses"] == {"Archived successfully": FILES}


def test_prune_deletes_warc_files_past_their_keep_days(actx, portal):
    from datetime import timedelta

    from sqlalchemy import update

    from exporter.archiver.prune import prune
    from exporter.db import utcnow

    job = run_sweep(actx, portal)
    _, files = records(actx, job.id)
    with actx.db.session() as s:
        s.execute(update(WarcFile).where(WarcFile.id == files[0].id).values(created_at=utcnow() - timedelta(days=actx.settings.archiver_warc_keep_days + 1)))
    assert prune(actx)["warc_files_deleted"] == 1
    assert actx.storage.stat(files[0].key) is None and actx.storage.stat(files[0].index_key) is None
    assert actx.storage.stat(files[1].key) is not None
    with actx.db.session() as s:
        assert s.get(WarcFile, files[0].id).deleted_at is not None
