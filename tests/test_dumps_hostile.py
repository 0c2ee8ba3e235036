"""`exporter sync` against a dump server that lies or attacks: a real dump (published by the
publisher) served by a local server the test can turn hostile. Nothing is written outside DEST,
no credential goes to another origin, a changed manifest anywhere in the chain is
refused before anything is applied, and an endless or oversized answer is cut off with a clear
error instead of filling the memory or the disk."""

from __future__ import annotations

import gzip
import json
import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

import pytest
from click.testing import CliRunner

from exporter.dumps import layout, sources
from exporter.dumps.sources import HttpSource, S3Source, SyncError
from exporter.dumps.sync import CURSOR, sync
from tests.dumps_helpers import AGENCY_ID, mirror, public_view, publish, tree
from tests.http_servers import _Base
from tests.raids_helpers import future, record, save

FOLDER = layout.folder(AGENCY_ID)


class DumpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        owner: DumpServer = self.server.owner
        path = self.path.split("?", 1)[0]
        owner.seen.append((path, dict(self.headers)))
        rel = path.removeprefix(owner.prefix)
        if rel in owner.behaviour:
            owner.behaviour[rel](self)
        else:
            self.serve(rel)

    def serve(self, rel: str) -> None:
        owner: DumpServer = self.server.owner
        body = owner.objects.get(rel)
        if body is None:
            self._send(404, b"not found")
        elif rel == layout.LATEST and self.headers.get("If-None-Match") == f'"{layout.sha256(body)}"':
            self._send(304, b"")
        else:
            self._send(200, body, {"ETag": f'"{layout.sha256(body)}"'})

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


class DumpServer(_Base):
    """Serves `objects` (keys relative to the dump's folder) under `prefix`; `behaviour[key](handler)` answers instead."""

    def __init__(self, objects: dict[str, bytes] | None = None, prefix: str = f"/d/{AGENCY_ID}/"):
        self.objects = dict(objects or {})
        self.prefix = prefix
        self.behaviour: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []
        super().__init__(DumpHandler)

    @property
    def dump_url(self) -> str:
        return self.url + self.prefix.rstrip("/")

    def manifest(self, seq: int) -> dict:
        return json.loads(self.objects[layout.changes_key(seq)])

    def replace_manifest(self, seq: int, doc: dict, relink_latest: bool = True) -> None:
        """Put another manifest at `seq`; LATEST.json is made to name it (a hostile server controls every byte)."""
        body = json.dumps(doc, indent=2).encode() + b"\n"
        self.objects[layout.changes_key(seq)] = body
        latest = json.loads(self.objects[layout.LATEST])
        if relink_latest and latest["seq"] == seq:
            latest["manifest"]["sha256"] = layout.sha256(body)
            self.objects[layout.LATEST] = json.dumps(latest).encode()


def endless(first: bytes = b"", headers: dict[str, str] | None = None):
    """An answer that never ends: `first`, then zeros until the client hangs up."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        try:
            handler.wfile.write(first)
            for _ in range(100_000):  # bounded: 6.4 GB at most, the client stops long before
                handler.wfile.write(b"\0" * 65536)
        except OSError:
            pass

    return answer


def claims_length(n: int):
    """An answer whose Content-Length announces `n` bytes."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(n))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        handler.wfile.write(b"{")

    return answer


def redirect(location: str, status: int = 302):
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler._send(status, b"", {"Location": location})

    return answer


def dump_objects(ctx) -> dict[str, bytes]:
    return {o.key.removeprefix(FOLDER): ctx.storage.read_bytes(o.key) for o in ctx.storage.list(FOLDER)}


def mirrored_then_changed(ctx, server: DumpServer, tmp_path, *new_raids: int):
    """A mirror synced from the server, then one change set published (and served) per new raid."""
    dest = tmp_path / "mirror"
    sync(HttpSource(server.dump_url), dest)
    for n in new_raids:
        save(ctx, record(n))
        publish(ctx)
    server.objects = dump_objects(ctx)
    return dest


@pytest.fixture
def dctx(pg_ctx):
    pg_ctx.settings = pg_ctx.settings.replace(export_settle_seconds=0, dump_part_records=3)
    return pg_ctx


@pytest.fixture
def served_dump(dctx):
    """The registry's dump after one change set, on a DumpServer; yields (ctx, server)."""
    save(dctx, *[record(n) for n in range(1, 6)], record(6, access="embargoed", expiry=future(), secret="S6"))
    publish(dctx)
    server = DumpServer(dump_objects(dctx)).start()
    try:
        yield dctx, server
    finally:
        server.stop()


def test_a_changed_manifest_inside_the_chain_is_refused_before_anything_is_applied_and_the_next_run_goes_on(served_dump, tmp_path):
    ctx, server = served_dump
    dest = mirrored_then_changed(ctx, server, tmp_path, 20, 21)
    untouched, cursor = tree(dest), (dest / CURSOR).read_text()
    good = server.objects[layout.changes_key(2)]
    changed = server.manifest(2)
    changed["created_at"] = "2000-01-01T00:00:00Z"  # change set 2 is not the one change set 3 follows
    server.replace_manifest(2, changed)
    with pytest.raises(SyncError, match="change set 3 does not follow change set 2.*the chain is broken"):
        sync(HttpSource(server.dump_url), dest)
    assert tree(dest) == untouched and (dest / CURSOR).read_text() == cursor  # nothing of change set 2 applied
    server.objects[layout.changes_key(2)] = good
    summary = sync(HttpSource(server.dump_url), dest)
    assert (summary.from_seq, summary.to_seq, summary.change_sets) == (1, 3, 2)
    assert mirror(dest) == public_view(ctx)


@pytest.mark.parametrize("key", ["../../../etc/x.jsonl.gz", "parts/../../LATEST.json", "/etc/passwd", "http://127.0.0.1:9/x.jsonl.gz", "//127.0.0.1:9/x", "parts/a?b"])
def test_a_part_key_outside_the_dump_folder_is_refused_and_nothing_is_fetched(served_dump, tmp_path, key):
    ctx, server = served_dump
    dest = mirrored_then_changed(ctx, server, tmp_path, 30)
    manifest = server.manifest(2)
    manifest["parts"][0]["key"] = key
    server.replace_manifest(2, manifest)
    untouched, seen = tree(dest), len(server.seen)
    result = CliRunner().invoke(_main(), ["sync", server.dump_url, str(dest), "--no-progress"])
    assert result.exit_code == 1 and "not a path inside the dump's folder" in result.output and "Traceback" not in result.output, result.output
    assert tree(dest) == untouched
    assert [p for p, _ in server.seen[seen:]] == [f"{server.prefix}LATEST.json", f"{server.prefix}{layout.changes_key(2)}"]
    assert not any(p.name == "x.jsonl.gz" or p.name == "passwd" for p in tmp_path.rglob("*"))


def test_a_snapshot_key_outside_the_dump_folder_is_refused(served_dump, tmp_path):
    _, server = served_dump
    latest = json.loads(server.objects[layout.LATEST])
    latest["snapshot"]["key"] = "../other-agency/snapshots/0000000001.json"
    server.objects[layout.LATEST] = json.dumps(latest).encode()
    with pytest.raises(SyncError, match="no snapshot inside the dump's folder"):
        sync(HttpSource(server.dump_url), tmp_path / "mirror")
    assert [p for p, _ in server.seen] == [f"{server.prefix}LATEST.json"]


def test_a_huge_latest_json_and_a_part_that_never_ends_are_cut_off(served_dump, tmp_path):
    _, server = served_dump
    dest = tmp_path / "mirror"
    server.behaviour[layout.LATEST] = endless(b'{"seq": 1, ')
    with pytest.raises(SyncError, match=r"LATEST.json: (\d+ bytes, )?larger than"):
        sync(HttpSource(server.dump_url), dest)
    server.behaviour[layout.LATEST] = claims_length(10**12)
    with pytest.raises(SyncError, match=r"LATEST.json: (\d+ bytes, )?larger than"):
        sync(HttpSource(server.dump_url), dest)
    server.behaviour.clear()

    snapshot = json.loads(server.objects[json.loads(server.objects[layout.LATEST])["snapshot"]["key"]])
    part = snapshot["parts"][0]["key"]
    server.behaviour[part] = endless(server.objects[part])
    with pytest.raises(SyncError, match="longer than the manifest says"):
        sync(HttpSource(server.dump_url), dest)
    assert not (dest / CURSOR).exists() and not list(dest.glob("*/*.json"))
    assert sum(f.stat().st_size for f in dest.rglob("*") if f.is_file()) < 1 << 20  # the endless part was not kept
    server.behaviour.clear()
    assert sync(HttpSource(server.dump_url), dest).snapshot == 1


def test_an_oversized_manifest_is_not_read(served_dump, tmp_path, monkeypatch):
    ctx, server = served_dump
    dest = mirrored_then_changed(ctx, server, tmp_path, 31)
    monkeypatch.setattr(sources, "MAX_DOCUMENT", 100)
    with pytest.raises(SyncError, match=r"changes/0000000002.json: (\d+ bytes, )?larger than the limit of 100"):
        sync(HttpSource(server.dump_url), dest)


def test_redirects_keep_credentials_on_the_same_origin_only(served_dump, tmp_path, monkeypatch):
    """A redirect is followed as browsers and requests do: credentials (user:password, S3's
    signature and session token) go to the dump's own origin only, never to another."""
    _, server = served_dump
    other = DumpServer(server.objects).start()
    try:
        server.behaviour[layout.LATEST] = redirect(f"{server.prefix}current/LATEST.json", 301)
        server.objects["current/LATEST.json"] = server.objects[layout.LATEST]
        latest = HttpSource(server.dump_url).latest(None)
        assert latest is not None and latest[0] == server.objects[layout.LATEST]  # same origin: followed

        server.behaviour[layout.LATEST] = redirect(f"{other.dump_url}/LATEST.json")
        creds = server.dump_url.replace("http://", "http://mirror:pw@")
        latest = HttpSource(creds).latest(None)
        assert latest is not None and latest[0] == server.objects[layout.LATEST]
        assert other.seen and all("Authorization" not in h for _, h in other.seen)

        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
        monkeypatch.setenv("AWS_SESSION_TOKEN", "the-session-token")
        server.behaviour[layout.LATEST] = redirect(f"{other.dump_url}/LATEST.json", 307)
        S3Source(f"s3://d/{AGENCY_ID}", server.url).latest(None)
        signed = [h for p, h in server.seen if p == f"/d/{AGENCY_ID}/LATEST.json" and "Authorization" in h]
        assert signed and signed[-1]["X-Amz-Security-Token"] == "the-session-token"  # signed for its own origin
        leaked = {k.lower() for _, h in other.seen for k in h} & {"authorization", "x-amz-security-token", "x-amz-date", "cookie"}
        assert not leaked, leaked  # and nothing of it went to the other one
    finally:
        other.stop()


def test_a_long_retry_after_is_waited_for_a_bounded_time(served_dump, tmp_path, monkeypatch):
    _, server = served_dump
    monkeypatch.setattr(sources, "RETRY_AFTER_MAX", 0.2)
    answers = iter([lambda h: h._send(503, b"busy", {"Retry-After": "86400"})])

    def busy_once(handler):
        try:
            next(answers)(handler)
        except StopIteration:
            handler.serve(layout.LATEST)

    server.behaviour[layout.LATEST] = busy_once
    summary = sync(HttpSource(server.dump_url), tmp_path / "mirror")
    assert summary.snapshot == 1 and [p for p, _ in server.seen[:2]] == [f"{server.prefix}LATEST.json"] * 2


def serve_snapshot_of(server: DumpServer, lines: list[bytes]) -> None:
    """Make the served snapshot one part of these lines (checksums and LATEST.json made to match, as a hostile server would)."""
    latest = json.loads(server.objects[layout.LATEST])
    snap_key = latest["snapshot"]["key"]
    snapshot = json.loads(server.objects[snap_key])
    part = gzip.compress(b"".join(line + b"\n" for line in lines))
    server.objects["parts/x/x-00001.jsonl.gz"] = part
    snapshot["parts"] = [{"key": "parts/x/x-00001.jsonl.gz", "size": len(part), "sha256": layout.sha256(part), "md5": "", "records": len(lines), "upserts": len(lines), "deletes": 0}]
    server.objects[snap_key] = json.dumps(snapshot).encode()
    latest["snapshot"]["sha256"] = layout.sha256(server.objects[snap_key])
    server.objects[layout.LATEST] = json.dumps(latest).encode()


def test_hostile_handles_only_ever_name_files_inside_dest(served_dump, tmp_path):
    _, server = served_dump
    ids = ["../../../escape", "https://raid.org/../../../../escape", "/etc/escape", "..", ".", "a/b/../../..", "https://raid.org/10.1/.hidden", "C:\\escape", "x" * 5000]
    serve_snapshot_of(server, [json.dumps({"op": "upsert", "id": i, "record": {"n": n}}).encode() for n, i in enumerate(ids)])
    dest = tmp_path / "in" / "mirror"
    summary = sync(HttpSource(server.dump_url), dest)
    assert summary.written == len(ids)
    files = [p for p in (tmp_path / "in").rglob("*") if p.is_file()]  # tmp_path also holds the test's storage
    assert all(dest in p.parents for p in files)
    assert [p for p in tmp_path.rglob("*escape*") if dest not in p.parents] == [] and not os.path.exists("/etc/escape")
    raid_files = [p for p in files if not p.name.startswith(".") and ".exporter-sync" not in p.parts]
    assert len(raid_files) == len(ids) and all(p.parent.parent == dest and not p.parent.name.startswith(".") for p in raid_files)


def test_a_part_whose_lines_are_not_operations_stops_the_run_with_a_clear_message(served_dump, tmp_path):
    _, server = served_dump
    serve_snapshot_of(server, [b'{"op":"upsert","id":5,"record":{}}'])
    result = CliRunner().invoke(_main(), ["sync", server.dump_url, str(tmp_path / "mirror"), "--no-progress"])
    assert result.exit_code == 1 and "line 1: not an upsert or delete operation" in result.output and "Traceback" not in result.output, result.output


def test_a_304_to_an_unconditional_request_and_a_latest_without_its_fields_are_refused(served_dump, tmp_path):
    _, server = served_dump
    server.behaviour[layout.LATEST] = lambda h: h._send(304, b"")
    with pytest.raises(SyncError, match="not conditional"):
        sync(HttpSource(server.dump_url), tmp_path / "mirror")
    server.behaviour[layout.LATEST] = lambda h: h._send(200, b'{"agency": "x", "seq": "1", "manifest": []}')
    with pytest.raises(SyncError, match="LATEST.json lacks"):
        sync(HttpSource(server.dump_url), tmp_path / "mirror")


def _main():
    from cli.main import main

    return main


def test_a_first_sync_never_runs_in_a_folder_that_holds_something_else(served_dump, tmp_path):
    _, server = served_dump
    dest = tmp_path / "home"
    (dest / "notes").mkdir(parents=True)
    (dest / "notes" / "todo.json").write_text("{}")  # a snapshot would remove every *.json it lacks
    with pytest.raises(SyncError, match="not empty and holds no mirror"):
        sync(HttpSource(server.dump_url), dest)
    assert tree(dest) == {"notes/todo.json": b"{}"} and server.seen == []
    mirror_dir = tmp_path / "mirror"
    (mirror_dir / ".exporter-sync").mkdir(parents=True)  # a first run killed before its cursor: resumed
    (mirror_dir / "zzz").mkdir()
    assert sync(HttpSource(server.dump_url), mirror_dir).snapshot == 1


def test_two_syncs_into_one_folder_at_once_the_second_stops_and_the_first_finishes(served_dump, tmp_path):
    ctx, server = served_dump
    dest = mirrored_then_changed(ctx, server, tmp_path, 40)
    part = server.manifest(2)["parts"][0]["key"]
    arrived, release = threading.Event(), threading.Event()

    def held(handler):
        arrived.set()
        release.wait(20)
        handler.serve(part)

    server.behaviour[part] = held
    first: dict = {}
    t = threading.Thread(target=lambda: first.update(summary=sync(HttpSource(server.dump_url), dest)))
    t.start()
    try:
        assert arrived.wait(20)
        with pytest.raises(SyncError, match="another exporter sync is running in"):
            sync(HttpSource(server.dump_url), dest)
    finally:
        release.set()
        t.join(30)
    assert first["summary"].to_seq == 2 and mirror(dest) == public_view(ctx)
    assert sync(HttpSource(server.dump_url), dest).up_to_date  # the folder is free again
