"""The storage interface every backend implements, and the pieces they share."""

from __future__ import annotations

import hashlib
import io
import mimetypes
import posixpath
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO

from ..errors import ExporterError, InvalidRequest, NotFound

CHUNK = 1024 * 1024
Data = bytes | BinaryIO | Iterable[bytes]


@dataclass
class ObjectInfo:
    key: str
    size: int
    modified: datetime | None = None
    content_type: str | None = None
    md5: str | None = None
    sha256: str | None = None
    etag: str | None = None  # what a conditional write compares (Storage.put_if)
    extra: dict = field(default_factory=dict)


class ObjectNotFound(NotFound):
    pass


class PreconditionFailed(ExporterError):
    """A conditional write lost: the object exists (create-only) or changed since it was read (compare-and-set)."""


def check_key(key: str) -> str:
    """Refuse keys that could escape the store or hide from listings."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise InvalidRequest(f"invalid storage key {key!r}", field="key")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts) or parts[0].startswith("."):
        raise InvalidRequest(f"invalid storage key {key!r}", field="key")
    return key


def guess_type(key: str) -> str:
    if key.endswith(".jsonl"):
        return "application/x-ndjson"
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class Hasher:
    """Counts bytes and computes md5 and sha256 as they pass."""

    def __init__(self) -> None:
        self.size = 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._md5.update(chunk)
        self._sha256.update(chunk)

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()


class HashingReader(io.RawIOBase):
    """A read-only stream over bytes, a file or an iterable of chunks, hashing what is read."""

    def __init__(self, data: Data):
        self.hasher = Hasher()
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = io.BytesIO(bytes(data))
        if hasattr(data, "read"):
            self._read = data.read
            self._chunks = None
        else:
            self._read = None
            self._chunks = iter(data)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        want = len(b)
        if self._read is not None:
            chunk = self._read(want)
        else:
            while not self._buf:
                try:
                    self._buf = bytes(next(self._chunks))
                except StopIteration:
                    break
            chunk, self._buf = self._buf[:want], self._buf[want:]
        if not chunk:
            return 0
        self.hasher.update(chunk)
        n = len(chunk)
        b[:n] = chunk
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            out = bytearray()
            while chunk := self.read(CHUNK):
                out += chunk
            return bytes(out)
        # Fill the request unless the stream ends: callers such as s3transfer take a
        # short read from a non-seekable stream for its end.
        out = bytearray()
        view = bytearray(min(size, CHUNK))
        while len(out) < size:
            n = self.readinto(memoryview(view)[: min(len(view), size - len(out))])
            if not n:
                break
            out += view[:n]
        return bytes(out)


class WriteHandle:
    """What `Storage.open_write` yields: a file to write to; `info` is set after commit."""

    def __init__(self, fh: BinaryIO):
        self._fh = fh
        self.hasher = Hasher()
        self.info: ObjectInfo | None = None

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        return self._fh.write(data)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self._fh.flush()

    def tell(self) -> int:
        return self.hasher.size


class Storage(ABC):
    """Put, get, list and sign objects by key. Writes are atomic: readers never see half an object."""

    scheme: str

    @abstractmethod
    def write(self, key: str, data: Data, content_type: str | None = None) -> ObjectInfo:
        """Store `data` at `key` from a stream, computing size, md5 and sha256 as it passes."""

    @abstractmethod
    @contextmanager
    def open_write(self, key: str, content_type: str | None = None, sync: bool = True) -> Iterator[WriteHandle]:
        """A writable file; the object appears at `key` only when the block ends without error.

        With sync=False a backend that buffers writes (a local disk) may leave the bytes in
        the page cache; call `sync()` before anything durable names the object."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable stream of the object; raises ObjectNotFound."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """The object's size and metadata, or None when it does not exist."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove the object; True if it existed."""

    @abstractmethod
    def move(self, src: str, dst: str) -> ObjectInfo:
        """Publish `src` as `dst` in one step (the final step of a job)."""

    @abstractmethod
    def put_if(self, key: str, data: Data, etag: str | None, content_type: str | None = None) -> ObjectInfo:
        """Store `data` at `key` only if the object's etag is still `etag` (None: only if there is no object).

        Raises PreconditionFailed otherwise, writing nothing: of two writers that read the same
        state, one wins. The returned ObjectInfo carries the new etag."""

    def create(self, key: str, data: Data, content_type: str | None = None) -> ObjectInfo:
        """Store `data` at `key` unless an object is there already (PreconditionFailed)."""
        return self.put_if(key, data, None, content_type)

    def read_with_etag(self, key: str) -> tuple[bytes, str] | None:
        """A small object's bytes and the etag they have, or None when there is no object."""
        info = self.stat(key)
        if info is None:
            return None
        try:
            data = self.read_bytes(key)
        except ObjectNotFound:
            return None
        return data, info.etag

    @abstractmethod
    def download_url(self, key: str, expires_in: int, filename: str | None = None) -> str:
        """A URL that downloads the object until it expires in `expires_in` seconds."""

    @abstractmethod
    def usage(self) -> tuple[int | None, int | None]:
        """(free, total) bytes where the backend knows them."""

    @abstractmethod
    def check(self) -> None:
        """Raise with a readable message when the store cannot be reached or written."""

    def read_bytes(self, key: str) -> bytes:
        with self.open(key) as fh:
            return fh.read()

    def delete_prefix(self, prefix: str) -> int:
        count = 0
        for info in list(self.list(prefix)):
            count += self.delete(info.key)
        return count

    def sync(self) -> None:  # noqa: B027 - a backend whose writes are durable when they return needs nothing
        """Make every write done with sync=False durable (one flush for a batch of objects)."""

    def cleanup_temporary(self, older_than_seconds: float) -> int:
        """Remove leftovers of writes that never finished (a killed worker); returns how many."""
        return 0


def filename_of(key: str) -> str:
    return posixpath.basename(key)
