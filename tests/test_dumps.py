"""Dumps and `exporter sync` against real servers: the web app serving /public/dumps on a local
server thread, and moto's S3 server. First copy, exact deltas, one request when nothing changed,
refusal of corrupt parts and broken chains, resuming a killed sync, reloading past retention."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from exporter import cleanup, jobs
from exporter.db import utcnow
from exporter.dumps import layout
from exporter.dumps import publish as pub
from exporter.dumps.models import DumpChangeset
from exporter.dumps.sources import HttpSource, S3Source, SyncError
from exporter.dumps.sync import CURSOR, Mirror, sync
from exporter.models import Job
from exporter.raids import registry
from exporter.raids.datacite import to_datacite_xml
from tests.dumps_helpers import AGENCY_ID, mirror, public_view, publish, served, tree
from tests.http_servers import RedirectingServer, ScenarioServer
from tests.raids_helpers import OTHER_AGENCY, OTHER_SP, SP, SP2, future, handle, past, record, run_export, save

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def dctx(ctx):
    """ctx with no settle delay and small parts (so change sets span several)."""
    ctx.settings = ctx.settings.replace(export_settle_seconds=0, dump_part_records=3, export_page_size=4)
    return ctx


@pytest.fixture
def pg_dctx(pg_ctx):
    """dctx on PostgreSQL only, for the tests where the backend does not matter."""
    pg_ctx.settings = pg_ctx.settings.replace(export_settle_seconds=0, dump_part_records=3)
    return pg_ctx


def registry_fixture(ctx):
    save(
        ctx,
        *[record(n) for n in range(1, 6)],
        record(6, access="embargoed", expiry=future(), secret="S6"),
        record(7, access="embargoed", expiry=past(), secret="S7"),
        record(8, sp=SP2, access="embargoed", secret="S8"),
        record(9, sp=OTHER_SP, agency=OTHER_AGENCY, secret="OTHER"),
    )


@contextmanager
def mirrored(ctx, dest: Path):
    """The registry fixture published and synced once into dest over HTTP; the server stays up."""
    registry_fixture(ctx)
    publish(ctx)
    with served(ctx) as server:
        sync(HttpSource(server.dump_url()), dest)
        yield server


def ops_of(ctx, manifest_key: str) -> list[dict]:
    folder = manifest_key.rsplit("changes/", 1)[0]
    manifest = json.loads(ctx.storage.read_bytes(manifest_key))
    out = []
    for part in manifest["parts"]:
        out += [json.loads(line) for line in gzip.decompress(ctx.storage.read_bytes(folder + part["key"])).splitlines()]
    return out


def test_first_sync_equals_the_public_view_then_each_sync_is_exactly_the_delta(dctx, tmp_path):
    registry_fixture(dctx)
    first = publish(dctx)
    assert first["seq"] == 1 and first["snapshot"] and first["upserts"] == 8 and first["deletes"] == 0 and first["parts"] == 3
    dest = tmp_path / "mirror"
    with served(dctx) as server:
        summary = sync(HttpSource(server.dump_url()), dest)
        assert summary.snapshot == 1 and summary.written == 8 and summary.to_seq == 1
        view = public_view(dctx)
        assert mirror(dest) == view and len(view) == 8
        assert not any(s in json.dumps(view) for s in ("S6", "S8", "OTHER"))

        # change, add, delete, re-embargo, move to another agency
        with dctx.db.session() as s:
            registry.update_raid(s, handle(1), {"title": [{"text": "A new title"}]})
            registry.delete_raid(s, handle(2))
        save(dctx, record(10), record(3, access="embargoed", expiry=future(), secret="S3"), record(4, sp=OTHER_SP, agency=OTHER_AGENCY))
        second = publish(dctx)
        assert (second["seq"], second["snapshot"], second["upserts"], second["deletes"]) == (2, False, 3, 3)
        ops = ops_of(dctx, second["manifest_key"])
        deletes = {(o["id"], o["reason"]) for o in ops if o["op"] == "delete"}
        assert deletes == {(handle(2), "deleted"), (handle(3), "embargoed"), (handle(4), "left_scope")}
        upserts = {o["id"]: o["full"] for o in ops if o["op"] == "upsert"}
        assert upserts == {handle(1): True, handle(10): True, handle(3): False}
        assert "S3" not in json.dumps(ops)

        before = len(server.requests)
        summary = sync(HttpSource(server.dump_url()), dest)
        assert (summary.change_sets, summary.written, summary.deleted, summary.unchanged) == (1, 3, 2, 0)
        assert summary.requests == 1 + 1 + second["parts"] == len(server.requests) - before  # LATEST, manifest, parts: no listing
        assert mirror(dest) == public_view(dctx)

        before = len(server.requests)
        summary = sync(HttpSource(server.dump_url()), dest)
        assert summary.up_to_date and summary.requests == 1
        assert server.requests[before:] == [(f"/public/dumps/{AGENCY_ID}/LATEST.json", 304)]

    assert publish(dctx) == {"agency": AGENCY_ID, "published": False, "seq": 2, "duration_seconds": pytest.approx(0, abs=5)}


def test_an_embargo_that_ends_is_republished_in_full(dctx, tmp_path):
    save(dctx, record(1), record(2, access="embargoed", expiry=future(1), secret="S2"))
    now = utcnow()
    pub.publish(dctx, AGENCY_ID, "run1", now=now)
    later = pub.publish(dctx, AGENCY_ID, "run2", now=now + timedelta(days=3))
    ops = ops_of(dctx, later["manifest_key"])
    assert [(o["op"], o["id"], o["full"]) for o in ops] == [("upsert", handle(2), True)]
    assert "S2" in json.dumps(ops[0]["record"])


def test_a_corrupt_part_a_truncated_part_and_a_broken_chain_are_refused_leaving_the_folder_untouched(pg_dctx, tmp_path):
    ctx, dest = pg_dctx, tmp_path / "mirror"
    with mirrored(ctx, dest) as server:
        untouched = tree(dest)
        save(ctx, record(11), record(12))
        with ctx.db.session() as s:
            registry.delete_raid(s, handle(5))
        second = publish(ctx)
        manifest = json.loads(ctx.storage.read_bytes(second["manifest_key"]))
        part = ctx.storage.path(f"dumps/{AGENCY_ID}/" + manifest["parts"][0]["key"])
        good = part.read_bytes()
        part.write_bytes(good[:-5] + bytes(b ^ 0xFF for b in good[-5:]))  # same size, other bytes
        with pytest.raises(SyncError, match="checksum mismatch"):
            sync(HttpSource(server.dump_url()), dest)
        assert tree(dest) == untouched

        result = CliRunner().invoke(_main(), ["sync", server.dump_url(), str(dest)])
        assert result.exit_code == 1 and "checksum mismatch" in result.output
        assert tree(dest) == untouched

        part.write_bytes(good)
        key = ctx.storage.path(second["manifest_key"])
        body = key.read_text()
        prev = json.loads(body)["previous_sha256"]
        key.write_text(body.replace(prev, prev[::-1]))  # same size, another predecessor
        with pytest.raises(SyncError, match="chain is broken"):
            sync(HttpSource(server.dump_url()), dest)
        assert tree(dest) == untouched
        key.write_text(body)
        sync(HttpSource(server.dump_url()), dest)
        assert mirror(dest) == public_view(ctx)


def _main():
    from cli.main import main

    return main


def test_over_s3_conditional_writes_hold_and_a_truncated_part_is_refused(pg_ctx, s3_settings, tmp_path, moto_server):
    from exporter.context import Context

    ctx = Context(s3_settings.replace(database_url=pg_ctx.settings.database_url, export_settle_seconds=0, dump_part_records=2))
    ctx.enqueue = lambda *a: None
    try:
        registry_fixture(ctx)
        publish(ctx)
        bucket = s3_settings.storage_url.split("/")[2]
        url = f"s3://{bucket}/exports/dumps/{AGENCY_ID}"
        dest = tmp_path / "mirror"
        summary = sync(S3Source(url, moto_server), dest)
        assert summary.snapshot == 1 and mirror(dest) == public_view(ctx)
        summary = sync(S3Source(url, moto_server), dest)
        assert summary.up_to_date and summary.requests == 1

        folder = layout.folder(AGENCY_ID)
        latest = ctx.storage.read_bytes(folder + layout.LATEST)
        with pytest.raises(pub.PreconditionFailed):
            ctx.storage.create(folder + layout.changes_key(1), b"{}")  # create-only: a manifest is never overwritten
        assert pub.advance_latest(ctx.storage, folder, b'{"seq": 0}', 0) is False  # never backwards
        assert ctx.storage.read_bytes(folder + layout.LATEST) == latest

        save(ctx, record(13), record(14), record(15))
        second = publish(ctx)
        manifest = json.loads(ctx.storage.read_bytes(second["manifest_key"]))
        key = folder + manifest["parts"][-1]["key"]
        whole = ctx.storage.read_bytes(key)
        ctx.storage.write(key, whole[: len(whole) // 2])
        untouched = tree(dest)
        with pytest.raises(SyncError, match="truncated"):
            sync(S3Source(url, moto_server), dest)
        assert tree(dest) == untouched
        ctx.storage.write(key, whole)
        summary = sync(S3Source(url, moto_server), dest)
        assert summary.written == 3 and mirror(dest) == public_view(ctx)
    finally:
        ctx.close()


def test_two_publishers_cannot_both_win_and_the_loser_removes_its_parts(dctx, monkeypatch):
    registry_fixture(dctx)
    publish(dctx)
    save(dctx, record(20))
    paused, release = threading.Event(), threading.Event()
    original = pub._commit

    def slow_commit(*args, **kwargs):
        if threading.current_thread().name == "loser":
            paused.set()
            release.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(pub, "_commit", slow_commit)
    errors = []

    def loser():
        try:
            pub.publish(dctx, AGENCY_ID, "loser01")
        except Exception as exc:
            errors.append(exc)

    t = threading.Thread(target=loser, name="loser")
    t.start()
    assert paused.wait(10)
    assert pub.publish(dctx, AGENCY_ID, "winner01")["seq"] == 2
    release.set()
    t.join(10)
    assert len(errors) == 1 and isinstance(errors[0], pub.PublicationLost)
    keys = [o.key for o in dctx.storage.list("dumps/")]
    assert not any("loser01" in k for k in keys) and any("winner01" in k for k in keys)
    latest = json.loads(dctx.storage.read_bytes(f"dumps/{AGENCY_ID}/LATEST.json"))
    assert latest["seq"] == 2


def test_a_crash_after_the_commit_is_repaired_by_the_next_run(dctx):
    registry_fixture(dctx)
    publish(dctx)
    save(dctx, record(21))
    second = publish(dctx)
    folder = layout.folder(AGENCY_ID)
    with dctx.db.session() as s:
        row = s.scalars(select(DumpChangeset).where(DumpChangeset.seq == 2)).one()
    dctx.storage.delete(second["manifest_key"])
    first_latest = json.loads(dctx.storage.read_bytes(folder + layout.LATEST))
    dctx.storage.delete(folder + layout.LATEST)
    assert first_latest["seq"] == 2
    assert publish(dctx)["published"] is False
    assert dctx.storage.read_bytes(second["manifest_key"]).decode() == row.manifest
    assert dctx.storage.read_bytes(folder + layout.LATEST).decode() == row.latest


def test_a_killed_sync_resumes_where_it_stopped(pg_dctx, tmp_path, monkeypatch):
    ctx, dest = pg_dctx, tmp_path / "mirror"
    with mirrored(ctx, dest) as server:
        # Killed (SIGKILL) while a part of the second change set downloads: the cursor stays at the first.
        save(ctx, *[record(n) for n in range(30, 36)])
        second = publish(ctx)
        server.delay["/parts/0000000002-"] = 30
        proc = subprocess.Popen([sys.executable, "-m", "cli", "sync", server.dump_url(), str(dest), "--no-progress"], cwd=ROOT, start_new_session=True, stderr=subprocess.PIPE)
        try:
            _wait(lambda: any("/parts/0000000002-" in p for p in server.arrived), 30)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        assert json.loads((dest / CURSOR).read_text())["seq"] == 1

        # Ctrl-C (SIGINT) in the same place: a clean stop with a message and exit code 130.
        server.delay["/parts/0000000002-"] = 3
        seen = len(server.arrived)
        proc = subprocess.Popen([sys.executable, "-m", "cli", "sync", server.dump_url(), str(dest), "--no-progress"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        _wait(lambda: any("/parts/0000000002-" in p for p in server.arrived[seen:]), 30)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
        assert json.loads((dest / CURSOR).read_text())["seq"] == 1
        server.delay.clear()

        # Stopped half-way through applying the third change set: resumed and finished next run.
        save(ctx, *[record(n) for n in range(40, 46)])
        with ctx.db.session() as s:
            registry.delete_raid(s, handle(1))
        publish(ctx)
        calls = {"n": 0}
        original = Mirror.upsert

        def dies(self, handle_, rec):
            calls["n"] += 1
            if calls["n"] == 9:
                raise KeyboardInterrupt
            return original(self, handle_, rec)

        monkeypatch.setattr(Mirror, "upsert", dies)
        with pytest.raises(KeyboardInterrupt):
            sync(HttpSource(server.dump_url()), dest, workers=1)
        assert json.loads((dest / CURSOR).read_text())["seq"] == 2  # the second applied, the third not yet
        monkeypatch.setattr(Mirror, "upsert", original)
        summary = sync(HttpSource(server.dump_url()), dest)
        assert summary.from_seq == 2 and summary.to_seq == 3 and summary.change_sets == 1
        assert mirror(dest) == public_view(ctx)
        assert second["seq"] == 2


def _wait(predicate, timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_a_cursor_older_than_the_retention_reloads_from_the_latest_snapshot(dctx, tmp_path):
    dctx.settings = dctx.settings.replace(dump_snapshot_every=2, dump_keep_snapshots=1)
    registry_fixture(dctx)
    publish(dctx)
    dest = tmp_path / "mirror"
    with served(dctx) as server:
        sync(HttpSource(server.dump_url()), dest)
        (dest / "zzz").mkdir()
        (dest / "zzz" / "stray.json").write_text("{}")  # a file no snapshot has
        results = []
        for n in range(50, 54):
            save(dctx, record(n))
            with dctx.db.session() as s:
                registry.delete_raid(s, handle(n - 49))
            results.append(publish(dctx))
        assert [r["snapshot"] for r in results] == [False, True, False, True]
        assert results[-1]["oldest_seq"] == 5 and results[-1]["pruned"] == [3, 4]
        keys = {o.key for o in dctx.storage.list("dumps/")}
        assert f"dumps/{AGENCY_ID}/{layout.changes_key(1)}" not in keys and not any("/parts/0000000001-" in k for k in keys)
        assert server and _status(server, f"/public/dumps/{AGENCY_ID}/{layout.changes_key(1)}") == 404
        summary = sync(HttpSource(server.dump_url()), dest)
        assert summary.snapshot == 5 and summary.to_seq == 5 and summary.change_sets == 0
        assert mirror(dest) == public_view(dctx) and not (dest / "zzz" / "stray.json").exists()


def _status(server, path: str) -> int:
    import requests

    return requests.get(server.url + path, timeout=10).status_code


def test_public_dump_objects_are_served_with_etags_and_nothing_else_is(dctx):
    registry_fixture(dctx)
    first = publish(dctx)
    client = __import__("web").create_app(dctx).test_client()
    r = client.get(f"/public/dumps/{AGENCY_ID}/LATEST.json")
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-cache" and r.json["seq"] == 1
    assert client.get(f"/public/dumps/{AGENCY_ID}/LATEST.json", headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
    manifest = client.get(f"/public/{first['manifest_key']}")
    assert manifest.status_code == 200 and "immutable" in manifest.headers["Cache-Control"]
    part = manifest.json["parts"][0]
    got = client.get(f"/public/dumps/{AGENCY_ID}/{part['key']}")
    assert got.status_code == 200 and layout.sha256(got.data) == part["sha256"] == got.headers["ETag"].strip('"')
    dctx.storage.write(f"dumps/{AGENCY_ID}/parts/stray/x.jsonl.gz", b"not named")
    assert client.get(f"/public/dumps/{AGENCY_ID}/parts/stray/x.jsonl.gz").status_code == 404
    assert client.get("/public/dumps/nobody/LATEST.json").status_code == 404
    assert "internal" not in json.dumps(manifest.json) and "watermark_id" not in manifest.get_data(as_text=True)
    assert set(manifest.json["watermark"]) == {"changes_up_to"}


def test_cleanup_removes_a_crashed_runs_parts_and_keeps_the_dump(dctx):
    registry_fixture(dctx)
    publish(dctx)
    stray = f"dumps/{AGENCY_ID}/parts/0000000002-deadbeef/changes-00001.jsonl.gz"
    dctx.storage.write(stray, b"left by a crash")
    before = {o.key for o in dctx.storage.list("dumps/")}
    out = cleanup.run(dctx, now=utcnow() + timedelta(hours=2), orphan_grace_seconds=3600)
    assert out["removed_orphans"] == 1
    assert {o.key for o in dctx.storage.list("dumps/")} == before - {stray}


def test_a_public_export_submits_the_agencys_dump_publication_once(dctx):
    registry_fixture(dctx)
    run_export(dctx, "export_public", {"agency": AGENCY_ID, "sitemaps": False})
    run_export(dctx, "export_public", {"agency": AGENCY_ID, "sitemaps": False})
    run_export(dctx, "export_private", {"service_point": SP})
    with dctx.db.session() as s:
        pending = s.scalars(select(Job).where(Job.kind == "publish_dump")).all()
    assert len(pending) == 1 and pending[0].status == "pending" and pending[0].params == {"agency": AGENCY_ID}
    assert ("exporter.publish_dump", pending[0].id, "dumps") in dctx.sent
    result = CliRunner().invoke(_main(), ["dump", "publish", "--agency", "https://ror.org/038sjwq14", "--wait"])
    assert result.exit_code == 0 and "change set 1, with a full snapshot" in result.output, result.output
    result = CliRunner().invoke(_main(), ["dump", "status", "--agency", AGENCY_ID])
    assert json.loads(result.output)["seq"] == 1
    unknown = CliRunner().invoke(_main(), ["dump", "status", "--agency", "00000nobody"])
    assert unknown.exit_code != 0 and "no registration agency 00000nobody" in unknown.output
    dctx.settings = dctx.settings.replace(dump_after_export=False)
    jobs.cancel(dctx, pending[0].id)
    run_export(dctx, "export_public", {"agency": AGENCY_ID, "sitemaps": False})
    with dctx.db.session() as s:
        assert s.scalars(select(Job).where(Job.kind == "publish_dump", Job.status == "pending")).all() == []


KERNEL4 = "{http://datacite.org/schema/kernel-4}"
REQUIRED = ("identifier", "creators/{ns}creator/{ns}creatorName", "titles/{ns}title", "publisher", "publicationYear", "resourceType")


def _required(xml: bytes) -> dict[str, str]:
    root = ET.fromstring(xml)
    assert root.tag == KERNEL4 + "resource"
    out = {}
    for path in REQUIRED:
        el = root.find(KERNEL4 + path.format(ns=KERNEL4))
        assert el is not None and (el.text or "").strip(), f"DataCite kernel-4 requires {path}"
        out[path.split("/")[0]] = el.text
    assert root.find(KERNEL4 + "identifier").get("identifierType")
    assert root.find(KERNEL4 + "resourceType").get("resourceTypeGeneral") == "Project"  # DataCite 4.4+ has Project
    assert (out["publicationYear"]).isdigit() and len(out["publicationYear"]) == 4
    return out


def test_datacite_xml_has_every_kernel4_mandatory_property_and_sync_writes_it(dctx, tmp_path):
    full = _required(to_datacite_xml(record(1, title="A <b>raid</b> & more")))
    assert full["titles"] == "A <b>raid</b> & more" and full["identifier"] == "10378.1/1"
    doi = record(2)
    doi["identifier"]["id"] = "https://raid.org/10.82841/abc12"
    assert _required(to_datacite_xml(doi))["identifier"] == "10.82841/abc12"
    registry_fixture(dctx)
    publish(dctx)
    dest = tmp_path / "xml"
    with served(dctx) as server:
        sync(HttpSource(server.dump_url()), dest, fmt="xml")
        files = sorted(dest.glob("*/*.xml"))
        assert len(files) == 8
        closed = _required((dest / layout.relative_path(handle(6), "xml")).read_bytes())
        assert closed["titles"] == "(:unal)" and closed["publisher"] == "038sjwq14"  # with publisherIdentifier, the ROR
        assert b"S6" not in b"".join(f.read_bytes() for f in files)
        with pytest.raises(SyncError, match="--format xml"):
            sync(HttpSource(server.dump_url()), dest, fmt="json")


def test_mirror_file_names_are_safe_and_sharded_by_the_handles_suffix():
    assert layout.relative_path("https://raid.org.au/10378.1/1234567", "json") == "567/raid.org.au+10378.1+1234567.json"
    assert layout.shard("https://raid.org/10.1/7") == "__7"
    assert layout.relative_path("https://x.org/a/..", "xml").split("/")[0] == "_.."
    assert "/" not in layout.file_name("https://x.org/a b/c+d", "json") and layout.file_name("https://x.org/a+b", "json") != layout.file_name("https://x.org/a/b", "json")
    assert len(layout.file_name("https://x.org/" + "é" * 200, "json")) == 64 + 5


def test_the_s3_source_signs_its_requests_as_s3_checks_them(tmp_path, monkeypatch):
    """moto's server with authentication on (after the IAM set-up) checks SigV4 signatures: ours pass, a wrong key does not."""
    import boto3
    import requests

    from tests.conftest import free_port

    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"}  # create_user, put_user_policy, create_access_key, then auth
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _answers(requests, url), 30)
        iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
        iam.create_user(UserName="mirror")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="mirror", PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="mirror")["AccessKey"]
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
        s3.create_bucket(Bucket="signed-dump")
        s3.put_object(Bucket="signed-dump", Key="p/dumps/a/LATEST.json", Body=b'{"seq": 1}')
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        source = S3Source("s3://signed-dump/p/dumps/a", url)
        body, etag = source.latest(None)
        assert body == b'{"seq": 1}' and source.latest(etag) is None and source.requests == 2
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-key")
        with pytest.raises(SyncError, match="HTTP 403"):
            S3Source("s3://signed-dump/p/dumps/a", url).latest(None)
    finally:
        server.terminate()
        server.wait(10)


def _answers(requests, url: str) -> bool:
    try:
        requests.get(url + "/moto-api/", timeout=1)
        return True
    except requests.RequestException:
        return False


def test_a_snapshot_is_also_written_once_its_days_have_passed(dctx):
    save(dctx, record(1))
    now = utcnow()
    assert pub.publish(dctx, AGENCY_ID, "days01", now=now)["snapshot"]
    save(dctx, record(2))
    assert pub.publish(dctx, AGENCY_ID, "days02", now=now + timedelta(days=1))["snapshot"] is False
    save(dctx, record(3))
    later = pub.publish(dctx, AGENCY_ID, "days03", now=now + timedelta(days=8))  # DUMP_SNAPSHOT_DAYS is 7, DUMP_SNAPSHOT_EVERY 50
    assert later["seq"] == 3 and later["snapshot"] is True


def test_sync_json_prints_what_it_did_and_the_requests_it_made(pg_dctx, tmp_path):
    ctx, dest = pg_dctx, tmp_path / "mirror"
    registry_fixture(ctx)
    publish(ctx)
    with served(ctx) as server:
        result = CliRunner().invoke(_main(), ["sync", server.dump_url(), str(dest), "--json"])
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)  # stderr has the in-process server's log lines
        assert {k: out[k] for k in ("fetched", "written", "deleted", "unchanged")} == {"fetched": 8, "written": 8, "deleted": 0, "unchanged": 0}
        assert out["requests"] == len(server.requests) and isinstance(out["seconds"], float)
        result = CliRunner().invoke(_main(), ["sync", server.dump_url(), str(dest), "--json"])
        again = json.loads(result.stdout)
        assert again["requests"] == 1 and again["up_to_date"] and again["written"] == 0 and server.requests[-1][1] == 304


@pytest.mark.parametrize("code", [302, 307])
def test_sync_sources_send_no_credential_to_another_origin(monkeypatch, code):
    """A dump source (S3 with session credentials, or HTTP with user:password in its URL) that
    redirects to another port gets its credentials; the other origin gets none of them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLEDUMPS")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "dump-secret-key")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "dump-session-token")
    other = ScenarioServer().start()
    target = f"{other.url}/data.csv"
    origin = RedirectingServer(target, code).start()
    try:
        for source, credential in (
            (S3Source("s3://bucket/exports/dumps/x", origin.url), "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLEDUMPS/"),
            (HttpSource(f"http://mirror:pw@127.0.0.1:{origin.port}/dumps/x"), "Basic "),
        ):
            for method in ("latest", "get"):
                body = source.latest(None)[0] if method == "latest" else source.get(layout.LATEST)
                assert body == b"a,b\n1,2\n"
                assert origin.seen[-1][2]["Authorization"].startswith(credential)
                leaked = {k.lower() for k in _last(other, "/data.csv")} & {"authorization", "x-amz-security-token", "x-amz-date", "x-amz-content-sha256", "cookie"}
                assert not leaked, leaked
            source.close()
        assert origin.seen[0][2]["X-Amz-Security-Token"] == "dump-session-token"
    finally:
        origin.stop()
        other.stop()


def _last(srv: ScenarioServer, path: str) -> dict[str, str]:
    return next(h for p, h in reversed(srv.requests) if p == path)


def test_a_manifest_or_latest_longer_than_the_cap_is_refused_not_read(pg_dctx, tmp_path, monkeypatch):
    """LATEST.json and manifests are read whole, so their length is capped (MAX_LATEST, MAX_DOCUMENT);
    the mirror stays as it was."""
    from exporter.dumps import sources

    registry_fixture(pg_dctx)
    publish(pg_dctx)
    dest = tmp_path / "mirror"
    with served(pg_dctx) as server:
        latest_size = len(pg_dctx.storage.read_bytes(layout.folder(AGENCY_ID) + layout.LATEST))
        monkeypatch.setattr(sources, "MAX_LATEST", latest_size - 1)
        with pytest.raises(SyncError, match=f"LATEST.json: {latest_size} bytes, larger than the limit of {latest_size - 1}"):
            sync(HttpSource(server.dump_url()), dest)
        monkeypatch.setattr(sources, "MAX_LATEST", latest_size)
        monkeypatch.setattr(sources, "MAX_DOCUMENT", latest_size)
        with pytest.raises(SyncError, match=r"/(changes|snapshots)/.*larger than the limit"):
            sync(HttpSource(server.dump_url()), dest)
    assert not dest.exists() or not any(dest.glob("*/*.json"))
