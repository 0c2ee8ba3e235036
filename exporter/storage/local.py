"""Storage in a local folder: temp file + rename for atomic writes, signed URLs via the web app."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from . import signing
from .base import (
    CHUNK,
    Data,
    HashingReader,
    ObjectInfo,
    ObjectNotFound,
    PreconditionFailed,
    Storage,
    WriteHandle,
    check_key,
    filename_of,
    guess_type,
)

TMP = ".tmp"
LOCKS = ".locks"


def _load_syncfs():
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()


PLACE_ATTEMPTS = 50


def _into_folder(source: str, dest: Path, place: Callable[[], object]) -> None:
    """Make dest's folder and run `place` (which puts `source` at dest). Deleting an object removes
    the folders it empties (LocalStorage._prune), so another thread or process may remove the
    folder between the two steps: both are tried again until the file is in place."""
    for _attempt in range(PLACE_ATTEMPTS):
        try:
            os.makedirs(dest.parent, exist_ok=True)
        except (FileNotFoundError, FileExistsError):  # a parent removed (or made and removed) meanwhile
            continue
        try:
            place()
            return
        except FileNotFoundError:
            if not os.path.exists(source):
                raise  # not the folder: the source itself is missing
    raise FileNotFoundError(f"{dest.parent}: removed {PLACE_ATTEMPTS} times while a file was put in it")


def _may_hold(folder: str, prefix: str) -> bool:
    """Whether keys under `folder` (ending in "/") can start with `prefix`."""
    return folder.startswith(prefix) or prefix.startswith(folder)


def _etag(st: os.stat_result) -> str:
    """Changes whenever the object is replaced (a rename brings a new inode) or rewritten."""
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


class LocalStorage(Storage):
    scheme = "file"

    def __init__(self, root: str | Path, public_url: str, secret_key: str):
        self.root = Path(root).resolve()
        self.public_url = public_url
        self.secret_key = secret_key
        (self.root / TMP).mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _info(self, key: str, path: Path, **extra) -> ObjectInfo:
        st = path.stat()
        return ObjectInfo(
            key=key,
            size=st.st_size,
            modified=datetime.fromtimestamp(st.st_mtime, UTC),
            content_type=guess_type(key),
            etag=_etag(st),
            **extra,
        )

    def _commit(self, tmp: str, key: str) -> Path:
        dest = self.path(key)
        _into_folder(tmp, dest, lambda: os.replace(tmp, dest))
        return dest

    @contextmanager
    def open_write(self, key: str, content_type: str | None = None, sync: bool = True) -> Iterator[WriteHandle]:
        check_key(key)
        fd, tmp = tempfile.mkstemp(dir=self.root / TMP, prefix=uuid.uuid4().hex)
        try:
            with os.fdopen(fd, "wb") as fh:
                handle = WriteHandle(fh)
                yield handle
                fh.flush()
                if sync:
                    os.fsync(fh.fileno())
            dest = self._commit(tmp, key)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        handle.info = self._info(key, dest, md5=handle.hasher.md5, sha256=handle.hasher.sha256)

    def write(self, key: str, data: Data, content_type: str | None = None) -> ObjectInfo:
        reader = HashingReader(data)
        with self.open_write(key, content_type) as handle:
            while chunk := reader.read(CHUNK):
                handle.write(chunk)
        return handle.info

    @contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        """An exclusive lock on `key` among the processes that use put_if on this folder."""
        folder = self.root / LOCKS
        folder.mkdir(exist_ok=True)
        with open(folder / hashlib.sha256(key.encode()).hexdigest()[:32], "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def put_if(self, key: str, data: Data, etag: str | None, content_type: str | None = None) -> ObjectInfo:
        dest = self.path(key)
        reader = HashingReader(data)
        with self._locked(key):
            current = self.stat(key)
            if (current.etag if current else None) != etag:
                raise PreconditionFailed(f"{key}: " + ("it exists already" if etag is None else "it changed since it was read"))
            fd, tmp = tempfile.mkstemp(dir=self.root / TMP, prefix=uuid.uuid4().hex)
            try:
                with os.fdopen(fd, "wb") as fh:
                    while chunk := reader.read(CHUNK):
                        fh.write(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
                if etag is None:
                    try:
                        _into_folder(tmp, dest, lambda: os.link(tmp, dest))  # fails if anything (even a writer without the lock) got there first
                    except FileExistsError:
                        raise PreconditionFailed(f"{key}: it exists already") from None
                else:
                    _into_folder(tmp, dest, lambda: os.replace(tmp, dest))
            finally:
                Path(tmp).unlink(missing_ok=True)
        h = reader.hasher
        return self._info(key, dest, md5=h.md5, sha256=h.sha256)

    def read_with_etag(self, key: str) -> tuple[bytes, str] | None:
        try:
            with open(self.path(key), "rb") as fh:
                return fh.read(), _etag(os.fstat(fh.fileno()))  # the etag of the very file read
        except (FileNotFoundError, IsADirectoryError):
            return None

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self.path(key), "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectNotFound(f"no object {key!r}") from None

    def stat(self, key: str) -> ObjectInfo | None:
        path = self.path(key)
        return self._info(key, path) if path.is_file() else None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`; walks only the folder the prefix names."""
        folder = prefix if prefix.endswith("/") or not prefix else os.path.dirname(prefix)
        folder = folder.strip("/")
        start = self.path(folder) if folder else self.root
        if not start.is_dir():
            return
        keys = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = os.path.relpath(dirpath, self.root)
            if rel_dir == ".":
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                rel_dir = ""
            rel_dir = rel_dir.replace(os.sep, "/")
            dirnames[:] = [d for d in dirnames if _may_hold(f"{rel_dir}/{d}/" if rel_dir else f"{d}/", prefix)]
            for name in filenames:
                key = f"{rel_dir}/{name}" if rel_dir else name
                if key.startswith(prefix):
                    keys.append(key)
        for key in sorted(keys):
            try:
                yield self._info(key, self.root / key)
            except FileNotFoundError:
                continue

    def _prune(self, path: Path) -> None:
        """Remove the emptied folders above `path`, up to the root."""
        for parent in path.parents:
            if parent == self.root:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def delete(self, key: str) -> bool:
        path = self.path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        self._prune(path)
        return True

    def move(self, src: str, dst: str) -> ObjectInfo:
        source = self.path(src)
        if not source.is_file():
            raise ObjectNotFound(f"no object {src!r}")
        dest = self._commit(str(source), dst)
        os.utime(dest)  # modified = when it reached this key, as S3's copy does (cleanup's grace counts from it)
        self._prune(source)
        return self._info(dst, dest)

    def download_url(self, key: str, expires_in: int, filename: str | None = None) -> str:
        check_key(key)
        return signing.sign(self.public_url, self.secret_key, key, expires_in, filename or filename_of(key))

    def usage(self) -> tuple[int | None, int | None]:
        du = shutil.disk_usage(self.root)
        return du.free, du.total

    def check(self) -> None:
        probe = self.root / TMP / f"healthz-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()

    def sync(self) -> None:
        """syncfs(2) of the storage's filesystem where Linux has it, else sync(2): one flush for a batch."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _syncfs is not None and _syncfs(fd) == 0:
                return
            os.sync()
        finally:
            os.close(fd)

    def cleanup_temporary(self, older_than_seconds: float) -> int:
        cutoff = time.time() - older_than_seconds
        removed = 0
        for path in (self.root / TMP).iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed
