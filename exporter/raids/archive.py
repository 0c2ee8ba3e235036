"""Streaming archive writers: members go straight into a ZIP (or tar.gz) on a writable stream.

Each member's size and sha256 are computed as its bytes pass, for the manifest. A ZIP is
written with data descriptors (no seeking), so the archive can flow to storage as it grows;
a tar header needs the member's size first, so tar.gz members are spooled to a temporary
file (disk, not memory) and then appended.
"""

from __future__ import annotations

import gzip
import hashlib
import queue
import tarfile
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import BinaryIO

FORMATS = {"zip": ("raids.zip", "application/zip"), "tar.gz": ("raids.tar.gz", "application/gzip")}


class Background:
    """Writes chunks to `sink` on a thread, so compressing and hashing (which release the GIL)
    overlap with reading the next page. At most `depth` chunks wait: memory stays bounded."""

    def __init__(self, sink, depth: int = 4):
        self._sink = sink
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="archive-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._sink.write(chunk)
                except BaseException as exc:  # handed to the producer at its next write or close
                    self._error = exc

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


class Member:
    """A member being written: counts and hashes what passes."""

    def __init__(self, name: str, sink):
        self.name = name
        self._sink = sink
        self._sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        if data:
            self._sha256.update(data)
            self.size += len(data)
            self._sink.write(data)

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def entry(self) -> dict:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


class ArchiveWriter:
    """Write members one after another into a zip or tar.gz on `fileobj`."""

    def __init__(self, fileobj: BinaryIO, fmt: str = "zip", level: int = 1, mtime: datetime | None = None):
        if fmt not in FORMATS:
            raise ValueError(f"unknown archive format {fmt!r}")
        self.fmt = fmt
        self.level = level
        self.mtime = mtime or datetime(1980, 1, 1)
        self.members: list[dict] = []
        if fmt == "zip":
            self._zip = zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level, allowZip64=True)
        else:
            self._gz = gzip.GzipFile(filename="", mode="wb", compresslevel=level, fileobj=fileobj, mtime=int(self.mtime.timestamp()))
            self._tar = tarfile.open(fileobj=self._gz, mode="w|", format=tarfile.PAX_FORMAT)

    @contextmanager
    def member(self, name: str) -> Iterator[Member | Background]:
        if self.fmt == "zip":
            info = zipfile.ZipInfo(name, date_time=self.mtime.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            try:
                info.compress_level = self.level
            except AttributeError:  # Python < 3.13
                info._compresslevel = self.level
            info.external_attr = 0o644 << 16
            with self._zip.open(info, "w", force_zip64=True) as sink:
                member = Member(name, sink)
                background = Background(member)
                try:
                    yield background
                finally:
                    background.close()
        else:
            with tempfile.TemporaryFile() as spool:
                member = Member(name, spool)
                yield member
                spool.seek(0)
                info = tarfile.TarInfo(name)
                info.size = member.size
                info.mtime = int(self.mtime.timestamp())
                info.mode = 0o644
                self._tar.addfile(info, spool)
        self.members.append(member.entry())

    def add(self, name: str, data: bytes) -> dict:
        with self.member(name) as m:
            m.write(data)
        return self.members[-1]

    def close(self) -> None:
        if self.fmt == "zip":
            self._zip.close()
        else:
            self._tar.close()
            self._gz.close()

    def abort(self) -> None:
        """Give up without writing the archive's end (the stream is being discarded)."""
        if self.fmt == "zip":
            self._zip.fp = None
        else:
            self._tar.closed = True
            self._tar.fileobj.closed = True
            self._gz.fileobj = None
