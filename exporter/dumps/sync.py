"""`exporter sync`: keep a local folder in step with a dump, fetching only what changed.

The folder holds one file per raid (`<shard>/<safe handle>.json|xml`, the shard being the last
three characters of the handle's suffix) and a cursor, `.exporter-sync.json`: the seq and
manifest sha256 of the last change set fully applied, and LATEST.json's etag once caught up.

A run reads LATEST.json (conditionally: nothing new is one request answered 304, and no
listing), then either continues from the cursor through the change sets after it, or, on a
first run or a cursor older than the dump keeps, loads the latest full snapshot (removing
what it no longer has) and continues from there. For every change set it checks the chain
(each manifest names the sha256 of the one before, the last is the one LATEST.json names),
downloads every part and verifies its size, sha256 and record count before applying any of
it, writes each file under a temporary name and renames it, and only then moves the cursor
(written atomically). A run stopped at any point (a kill, Ctrl-C, a failed part) leaves the
cursor at the last complete change set, so the next run resumes there; re-applying a change
set is harmless. A broken chain, a checksum mismatch or a truncated part stops the run
before anything of that change set is applied.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import shutil
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import layout
from .sources import Missing, Source, SyncError

CURSOR = ".exporter-sync.json"
WORK = ".exporter-sync"
FORMATS = ("json", "xml")
Progress = Callable[[int, int], None]  # (records applied, records to apply)


@dataclass
class Summary:
    """What one run did; `requests` counts every HTTP request made."""

    fetched: int = 0  # records read from parts
    written: int = 0
    deleted: int = 0
    unchanged: int = 0
    requests: int = 0
    seconds: float = 0.0
    bytes_fetched: int = 0
    change_sets: int = 0
    snapshot: int | None = None  # the seq of the snapshot loaded, if one was
    from_seq: int | None = None
    to_seq: int | None = None
    up_to_date: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Cursor:
    agency: str
    format: str
    seq: int
    manifest_sha256: str
    etag: str | None = None

    @classmethod
    def load(cls, dest: Path) -> Cursor | None:
        path = dest / CURSOR
        try:
            data = json.loads(path.read_text())
            return cls(data["agency"], data["format"], int(data["seq"]), data["manifest_sha256"], data.get("etag"))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise SyncError(f"{path} is not a cursor this version understands ({exc}); move it away to start over") from None

    def save(self, dest: Path) -> None:
        _atomic_write(dest / CURSOR, json.dumps(asdict(self), indent=2).encode() + b"\n", dest / WORK, sync=True)


def _atomic_write(path: Path, data: bytes, tmpdir: Path, sync: bool = False) -> None:
    fd, tmp = tempfile.mkstemp(dir=tmpdir, prefix=".w")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync:
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise SyncError(f"{what} is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise SyncError(f"{what} is not a JSON object")
    return doc


class Mirror:
    """The local folder: one file per raid, written under a temporary name and renamed."""

    def __init__(self, dest: Path, fmt: str, publisher: str | None):
        self.dest, self.fmt, self.publisher = dest, fmt, publisher
        self.work = dest / WORK
        self.tmp = self.work / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._shards: set[str] = set()
        self._lock = threading.Lock()

    def render(self, record: dict[str, Any]) -> bytes:
        if self.fmt == "xml":
            from ..raids.datacite import to_datacite_xml

            return to_datacite_xml(record, self.publisher)
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    def path(self, handle: str) -> Path:
        return self.dest / layout.relative_path(handle, self.fmt)

    def upsert(self, handle: str, record: dict[str, Any]) -> bool:
        """Write the raid's file unless it already holds these bytes; True if written."""
        data = self.render(record)
        path = self.path(handle)
        try:
            if path.stat().st_size == len(data) and path.read_bytes() == data:
                return False
        except FileNotFoundError:
            shard = path.parent.name
            if shard not in self._shards:
                path.parent.mkdir(exist_ok=True)
                with self._lock:
                    self._shards.add(shard)
        _atomic_write(path, data, self.tmp)
        return True

    def delete(self, handle: str) -> bool:
        path = self.path(handle)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        try:
            path.parent.rmdir()  # the shard's last file
        except OSError:
            pass
        return True

    def files(self) -> Iterator[Path]:
        """Every raid file in the folder (a local listing; only a snapshot reload needs it)."""
        suffix = "." + self.fmt
        with os.scandir(self.dest) as shards:
            for shard in shards:
                if shard.is_dir() and not shard.name.startswith("."):
                    with os.scandir(shard.path) as entries:
                        for entry in entries:
                            if entry.name.endswith(suffix) and not entry.name.startswith("."):
                                yield Path(entry.path)


class _Stoppable:
    """A part's file as a download writes it: once the run is stopping (Ctrl-C, another part failed), the next chunk ends the download."""

    def __init__(self, fh, stop: threading.Event):
        self._fh, self._stop = fh, stop

    def write(self, chunk: bytes) -> int:
        if self._stop.is_set():
            raise KeyboardInterrupt
        return self._fh.write(chunk)


@dataclass
class Part:
    n: int
    entry: dict[str, Any]
    path: Path | None = None


@dataclass
class Syncer:
    source: Source
    dest: Path
    fmt: str = "json"
    workers: int = 4
    progress: Progress | None = None
    summary: Summary = field(default_factory=Summary)
    stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _applied: int = 0

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self.summary, name, getattr(self.summary, name) + n)

    # -- parts -------------------------------------------------------------------------------

    def _fetch(self, part: Part, workdir: Path) -> None:
        """Download one part and verify its size, sha256, gzip stream and record count."""
        entry = part.entry
        key, size, sha = entry["key"], entry["size"], entry["sha256"]
        path = workdir / f"{part.n:05d}.jsonl.gz"
        with open(path, "w+b") as fh:
            self.source.download(key, _Stoppable(fh, self.stop), size)
            got = fh.tell()
            if got != size:
                raise SyncError(f"part {key} is truncated: {got} of {size} bytes arrived")
            fh.seek(0)
            digest = _sha256_file(fh)
            if digest != sha:
                raise SyncError(f"part {key}: checksum mismatch (sha256 {digest}, the manifest says {sha})")
            fh.seek(0)
            try:
                with gzip.GzipFile(fileobj=fh) as gz:
                    lines = sum(chunk.count(b"\n") for chunk in iter(lambda: gz.read(1 << 20), b""))
            except (OSError, EOFError, zlib.error) as exc:
                raise SyncError(f"part {key} is not a whole gzip stream ({exc})") from None
        if lines != int(entry["records"]):
            raise SyncError(f"part {key} holds {lines} records, the manifest says {entry['records']}")
        self._count("bytes_fetched", size)
        part.path = path

    def _ops(self, part: Part) -> Iterator[dict[str, Any]]:
        """The part's operations, each checked: a line that is not one stops the run with its place."""
        with gzip.open(part.path, "rb") as gz:
            for n, line in enumerate(gz, 1):
                if not line.strip():
                    continue
                try:
                    op = json.loads(line)
                except ValueError:
                    op = None
                if not (isinstance(op, dict) and isinstance(op.get("id"), str) and op["id"]
                        and (op.get("op") == "delete" or (op.get("op") == "upsert" and isinstance(op.get("record"), dict)))):
                    raise SyncError(f"part {part.entry['key']}, line {n}: not an upsert or delete operation of a raid")
                yield op

    def _apply_part(self, mirror: Mirror, part: Part, seen: set[str] | None, total: int) -> None:
        held = None  # a tombstone is applied only if the same raid's upsert does not follow it
        for op in self._ops(part):
            if self.stop.is_set():
                raise KeyboardInterrupt
            handle = op["id"]
            if held is not None and held != handle:
                self._delete(mirror, held)
            held = None
            if op["op"] == "delete":
                held = handle
            else:
                if seen is not None:
                    with self._lock:
                        seen.add(handle)
                self._count("written" if mirror.upsert(handle, op["record"]) else "unchanged")
            with self._lock:
                self.summary.fetched += 1
                self._applied += 1
                applied = self._applied
            if self.progress and applied % 500 == 0:
                self.progress(applied, total)
        if held is not None:
            self._delete(mirror, held)

    def _delete(self, mirror: Mirror, handle: str) -> None:
        if mirror.delete(handle):
            self._count("deleted")

    def apply(self, mirror: Mirror, parts: list[dict[str, Any]], replace: bool = False) -> None:
        """Fetch and verify every part, then apply them; `replace` (a snapshot) also removes files it lacks."""
        workdir = Path(tempfile.mkdtemp(dir=mirror.work, prefix="parts-"))
        items = [Part(n, p) for n, p in enumerate(parts)]
        total = sum(p["records"] for p in parts)
        self._applied = 0
        try:
            self._run(lambda part: self._fetch(part, workdir), items)
            seen: set[str] | None = set() if replace else None
            self._run(lambda part: self._apply_part(mirror, part, seen, total), items)
            if replace:
                keep = {layout.relative_path(h, mirror.fmt) for h in seen}
                for path in list(mirror.files()):
                    if f"{path.parent.name}/{path.name}" not in keep:
                        path.unlink(missing_ok=True)
                        self._count("deleted")
            if self.progress:
                self.progress(self._applied, total)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _run(self, fn: Callable[[Part], None], items: list[Part]) -> None:
        if self.workers <= 1 or len(items) <= 1:
            for item in items:
                fn(item)
            return
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sync")
        try:
            futures = [pool.submit(fn, item) for item in items]
            for future in futures:
                future.result()
        except BaseException:
            self.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> Summary:
        started = time.monotonic()
        try:
            self._sync()
        finally:
            self.summary.requests = self.source.requests
            self.summary.seconds = round(time.monotonic() - started, 3)
        return self.summary

    def _sync(self) -> None:
        self.dest.mkdir(parents=True, exist_ok=True)
        if not (self.dest / WORK).is_dir() and not (self.dest / CURSOR).exists() and any(self.dest.iterdir()):
            # a snapshot removes every raid file it lacks: never in a folder that holds something else
            raise SyncError(f"{self.dest} is not empty and holds no mirror; sync into an empty folder (or one a sync made)")
        (self.dest / WORK).mkdir(exist_ok=True)
        with _only_run(self.dest):
            self._sync_held()

    def _sync_held(self) -> None:
        cursor = Cursor.load(self.dest)
        if cursor is not None and cursor.format != self.fmt:
            raise SyncError(f"{self.dest} holds a {cursor.format} mirror; sync it with --format {cursor.format} or into another folder")
        self.summary.from_seq = cursor.seq if cursor else None
        got = self.source.latest(cursor.etag if cursor else None)
        if got is None:
            if cursor is None:
                raise SyncError("LATEST.json was answered 304 Not Modified to a request that was not conditional")
            self.summary.up_to_date, self.summary.to_seq = True, cursor.seq
            return
        body, etag = got
        latest = _json(body, "LATEST.json")
        agency, seq, head, oldest = latest.get("agency"), latest.get("seq"), latest.get("manifest"), latest.get("oldest_seq", 1)
        if not (isinstance(agency, str) and isinstance(seq, int) and isinstance(head, dict) and isinstance(oldest, int)):
            raise SyncError("LATEST.json lacks agency, seq, manifest or oldest_seq")
        if cursor is not None and cursor.agency != agency:
            raise SyncError(f"{self.dest} mirrors the dump of agency {cursor.agency}, not {agency}")
        if cursor is not None and seq < cursor.seq:
            raise SyncError(f"the dump says its newest change set is {seq}, but this folder has applied {cursor.seq}: refusing to go back")
        mirror = Mirror(self.dest, self.fmt, agency)
        if cursor is None or cursor.seq < oldest - 1:
            cursor = self._load_snapshot(mirror, latest, agency)
        for nxt, digest, parts in self._chain(cursor, seq, head):
            self.apply(mirror, parts)
            cursor = Cursor(agency, self.fmt, nxt, digest)
            self.summary.change_sets += 1
            if nxt == seq:
                cursor.etag = etag  # only once caught up: a 304 must never skip a change set
            cursor.save(self.dest)
        if cursor.seq == seq and cursor.manifest_sha256 != head.get("sha256"):
            raise SyncError(f"this folder's change set {seq} is not the one LATEST.json names: the chain is broken")
        if cursor.etag != etag:
            cursor.etag = etag
            cursor.save(self.dest)
        self.summary.to_seq = cursor.seq

    def _chain(self, cursor: Cursor, seq: int, head: dict[str, Any]) -> list[tuple[int, str, list[dict[str, Any]]]]:
        """The change sets after the cursor up to `seq` as (seq, manifest sha256, parts), the whole chain checked before
        any is applied: each manifest names the sha256 of the one before, the last is the one LATEST.json names."""
        chain, previous = [], cursor.manifest_sha256
        for nxt in range(cursor.seq + 1, seq + 1):
            data = self._manifest(nxt, cursor)
            digest = layout.sha256(data)
            manifest = _json(data, f"the manifest of change set {nxt}")
            if manifest.get("seq") != nxt or manifest.get("previous_sha256") != previous:
                raise SyncError(f"change set {nxt} does not follow change set {nxt - 1} (its previous_sha256 is {manifest.get('previous_sha256')}, expected {previous}): the chain is broken")
            chain.append((nxt, digest, _parts(manifest, f"change set {nxt}")))
            previous = digest
        if chain and previous != head.get("sha256"):
            raise SyncError(f"change set {seq}: its sha256 {previous} is not the one LATEST.json names ({head.get('sha256')}): the chain is broken")
        return chain

    def _manifest(self, seq: int, cursor: Cursor) -> bytes:
        try:
            return self.source.get(layout.changes_key(seq))
        except Missing:
            raise SyncError(f"the dump no longer has change set {seq} (pruned while this run read it); run again to reload from the latest snapshot") from None

    def _load_snapshot(self, mirror: Mirror, latest: dict[str, Any], agency: str) -> Cursor:
        snap = latest.get("snapshot")
        if not isinstance(snap, dict) or not layout.is_relative_key(snap.get("key")):
            raise SyncError(f"LATEST.json names no snapshot inside the dump's folder ({snap!r})")
        data = self.source.get(snap["key"])
        digest = layout.sha256(data)
        if digest != snap.get("sha256"):
            raise SyncError(f"snapshot {snap.get('seq')}: its sha256 {digest} is not the one LATEST.json names ({snap.get('sha256')})")
        doc = _json(data, f"snapshot {snap.get('seq')}")
        if not isinstance(doc.get("seq"), int) or not isinstance(doc.get("manifest_sha256"), str):
            raise SyncError(f"snapshot {snap.get('seq')} lacks seq or manifest_sha256")
        self.apply(mirror, _parts(doc, f"snapshot {doc['seq']}"), replace=True)
        cursor = Cursor(agency, self.fmt, doc["seq"], doc["manifest_sha256"])
        cursor.save(self.dest)
        self.summary.snapshot = cursor.seq
        return cursor


@contextmanager
def _only_run(dest: Path) -> Iterator[None]:
    """Hold DEST for this run (an flock, let go when the process ends, killed too): two runs at once would
    interleave change sets and a snapshot's clean-up, and could leave a deleted raid's file behind a cursor past it."""
    fd = os.open(dest / WORK / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SyncError(f"another exporter sync is running in {dest}; let it finish") from None
        yield
    finally:
        os.close(fd)


def _parts(doc: dict[str, Any], what: str) -> list[dict[str, Any]]:
    """A manifest's or snapshot's parts, each a key inside the dump's folder with its size, sha256 and record count."""
    parts = doc.get("parts", [])
    if not isinstance(parts, list):
        raise SyncError(f"{what}: parts is not a list")
    for p in parts:
        if not isinstance(p, dict) or not layout.is_relative_key(p.get("key")):
            raise SyncError(f"{what}: a part's key is not a path inside the dump's folder ({p.get('key') if isinstance(p, dict) else p!r}); refused")
        if not all(isinstance(p.get(k), int) and p[k] >= 0 for k in ("size", "records")) or not isinstance(p.get("sha256"), str):
            raise SyncError(f"{what}: part {p['key']} lacks its size, sha256 or record count")
    return parts


def _sha256_file(fh) -> str:
    import hashlib

    h = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


def sync(source: Source, dest: str | Path, fmt: str = "json", workers: int = 4, progress: Progress | None = None) -> Summary:
    """Bring `dest` in step with the dump `source` serves; raises SyncError (the folder stays as after its last complete change set)."""
    if fmt not in FORMATS:
        raise SyncError(f"format must be one of {', '.join(FORMATS)}")
    return Syncer(source, Path(dest), fmt, max(1, workers), progress).run()
