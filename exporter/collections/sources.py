"""A collection's source: a local folder (under COLLECTIONS_SOURCE_ROOTS) or an S3 prefix, listed and read.

A file is known by its name under the source, its size and its mtime (folder) or ETag (S3): the
same name with another size or stamp is a new file; one seen before is never taken again.
`_butler_zip_index.json`, which `butler retrieve-artifacts` writes next to the files, is read
for per-file metadata (the data ID of each file's dataset).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from ..config import Settings
from ..errors import ExporterError, InvalidRequest, NotFound

BUTLER_INDEX = "_butler_zip_index.json"
MAX_INDEX_BYTES = 50 * 1024 * 1024


NOT_A_FILE = (errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.ENXIO)  # a link, a folder, a file it may not read


class SourceError(ExporterError):
    """The source cannot be read (no credentials, no such bucket, access denied): one line saying why."""


class SourceChanged(ExporterError):
    """The file is not the one the poll saw (written to since): the next poll takes the new version."""


@dataclass(frozen=True)
class SourceEntry:
    name: str  # the path under the source, with '/'
    size: int
    signature: str
    modified: float | None = None  # unix time of the last change, for a folder's files (S3 objects appear whole)


def normalize_source(settings: Settings, source: str) -> str:
    """The canonical form of a source, or InvalidRequest(field="source") saying why it cannot be one."""
    if not isinstance(source, str) or not source.strip():
        raise InvalidRequest("source is required: a folder or s3://bucket/prefix", field="source")
    source = source.strip()
    if source.startswith("s3://"):
        parts = urlsplit(source)
        if not parts.netloc:
            raise InvalidRequest(f"source {source!r} names no bucket (s3://bucket/prefix)", field="source")
        prefix = parts.path.strip("/")
        _not_in_storage(settings, f"s3://{parts.netloc}/{prefix}" if prefix else f"s3://{parts.netloc}", parts.netloc, prefix)
        return f"s3://{parts.netloc}/{prefix}" if prefix else f"s3://{parts.netloc}"
    if "://" in source:
        raise InvalidRequest(f"source must be a folder or s3://bucket/prefix, not {source.split('://')[0]}://", field="source")
    path = Path(source).expanduser().resolve()
    roots = [Path(r.strip()).expanduser().resolve() for r in settings.collections_source_roots.split(",") if r.strip()]
    if not any(path == root or root in path.parents for root in roots):
        allowed = ", ".join(str(r) for r in roots) or "(none)"
        raise InvalidRequest(f"source folder {path} is outside the folders collections may read ({allowed}; EXPORTER_COLLECTIONS_SOURCE_ROOTS)", field="source")
    _not_in_storage(settings, str(path), None, str(path))
    if not path.is_dir():
        raise InvalidRequest(f"source folder {path} does not exist or is not a folder; create it (or check the path) and add the project again", field="source")
    return str(path)


def _nested(a: str, b: str) -> bool:
    """Whether one '/'-separated path is the other or under it."""
    a, b = a.strip("/"), b.strip("/")
    return not a or not b or a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _not_in_storage(settings: Settings, source: str, bucket: str | None, path: str) -> None:
    """A source may not overlap Exporter's own storage: the service would copy its quarantine and private exports into a batch."""
    parts = urlsplit(settings.storage_url)
    if parts.scheme == "s3":
        overlaps = bucket == parts.netloc and _nested(path, parts.path)
    else:
        overlaps = bucket is None and _nested(str(Path(unquote(parts.netloc + parts.path)).expanduser().resolve()), path)
    if overlaps:
        raise InvalidRequest(f"source {source} overlaps Exporter's own storage ({settings.storage_url}); give the folder or prefix the science platform writes to", field="source")


class Source(ABC):
    @abstractmethod
    def entries(self) -> Iterator[SourceEntry]:
        """Every file of the source (but the butler index), by name."""

    @abstractmethod
    def open(self, name: str, expect: str | None = None) -> BinaryIO:
        """A readable stream of one file; NotFound when it is gone, SourceChanged when it is not the `expect` signature."""

    def check(self, fh: BinaryIO, name: str, expect: str) -> None:  # noqa: B027 - S3's IfMatch already made the read that version
        """After reading `fh` whole: SourceChanged if what was read is not the version the poll saw."""
        return None

    def butler_index(self) -> dict[str, dict[str, str]]:
        """Per-file metadata from `_butler_zip_index.json` (file name -> {key: value}), or {} when there is none."""
        try:
            with self.open(BUTLER_INDEX) as fh:
                raw = fh.read(MAX_INDEX_BYTES + 1)
        except (NotFound, FileNotFoundError):
            return {}
        if len(raw) > MAX_INDEX_BYTES:
            return {}
        try:
            return butler_metadata(json.loads(raw))
        except (ValueError, TypeError, AttributeError):
            return {}


class FolderSource(Source):
    def __init__(self, root: str):
        self.root = Path(root)

    def entries(self) -> Iterator[SourceEntry]:
        if not self.root.is_dir():
            raise NotFound(f"source folder {self.root} does not exist (or is not a folder)")
        root = self._checked_root()
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in filenames:
                if fn.startswith(".") or fn == BUTLER_INDEX:
                    continue
                path = Path(dirpath) / fn
                try:
                    st = path.lstat()
                    if stat.S_ISLNK(st.st_mode):  # a link is followed only to a file inside the folder (never to /etc/passwd)
                        if root not in path.resolve().parents:
                            continue
                        st = path.stat()
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                found.append(SourceEntry(path.relative_to(self.root).as_posix(), st.st_size, signature(st), max(st.st_mtime, st.st_ctime)))
        yield from sorted(found, key=lambda e: e.name)

    def open(self, name: str, expect: str | None = None) -> BinaryIO:
        """The file, opened one path component at a time without following a link (a link swapped in since the
        listing is refused); when `expect` is given, the file must still be the one the poll saw."""
        root = self._checked_root()
        target = (root / name).resolve()
        if root not in target.parents:
            raise NotFound(f"{name} leads out of the source folder")
        parts = target.relative_to(root).parts
        fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in root.parts[1:]:  # the folder itself, without following a link swapped in for it or a parent since the check
                fd, parent = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd), fd
                os.close(parent)
        except OSError as exc:
            os.close(fd)
            raise SourceError(f"source folder {root} cannot be opened: {os.strerror(exc.errno or 0)}") from None
        try:
            for part in parts[:-1]:
                fd, parent = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd), fd
                os.close(parent)
            fd, parent = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd), fd  # O_NONBLOCK: a FIFO swapped in does not hang the worker
            os.close(parent)
        except FileNotFoundError:
            os.close(fd)
            raise NotFound(f"{name} is no longer in the source folder") from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in NOT_A_FILE:
                raise NotFound(f"{name} is no longer a file of the source folder ({os.strerror(exc.errno)})") from None
            raise  # EIO, ESTALE and the like: collect_batch gives the job back to the queue
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise NotFound(f"{name} is no longer a regular file")
        os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
        if expect is not None and signature(st) != expect:
            fh.close()
            raise SourceChanged(f"{name} changed after the poll saw it; the next poll takes the new version")
        return fh

    def _checked_root(self) -> Path:
        """The folder, which was stored with every link resolved: if it (or a folder above it) is a link now, the owner
        may have pointed it at /etc or at Exporter's own files, so nothing is read."""
        root = Path(os.path.abspath(self.root))
        resolved = root.resolve()
        if resolved != root:
            raise SourceError(f"source folder {root} is now a link (to {resolved}); nothing is read from it until it is a folder again")
        return root

    def check(self, fh: BinaryIO, name: str, expect: str) -> None:
        """After reading: SourceChanged if the file was written to meanwhile (its size or mtime moved)."""
        if signature(os.fstat(fh.fileno())) != expect:
            raise SourceChanged(f"{name} changed while it was copied; the next poll takes the new version")


def signature(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}"


class S3Source(Source):
    def __init__(self, settings: Settings, url: str):
        from ..storage.s3 import S3Storage

        parts = urlsplit(url)
        self.url = url
        self.bucket, self.prefix = parts.netloc, parts.path.strip("/")
        self.client = S3Storage(self.bucket, "", settings.s3_endpoint_url, settings.s3_region).client

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _error(self, exc: Exception) -> SourceError:
        """One line for what S3 answered (or why it could not be asked), naming the source."""
        from botocore.exceptions import ClientError, NoCredentialsError

        if isinstance(exc, NoCredentialsError):
            why = "no S3 credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an instance role)"
        elif isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            why = f"S3 answered {err.get('Code', '?')}: {err.get('Message') or 'no message'}"
        else:
            why = f"{type(exc).__name__}: {exc}"
        return SourceError(f"cannot read {self.url}: {why}")

    def entries(self) -> Iterator[SourceEntry]:
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = f"{self.prefix}/" if self.prefix else ""
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(prefix):]
                    if not name or name.endswith("/") or name.rsplit("/", 1)[-1].startswith(".") or name == BUTLER_INDEX:
                        continue
                    yield SourceEntry(name, obj["Size"], f"{obj['Size']}:{obj.get('ETag', '').strip(chr(34))}")
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc) from None

    def open(self, name: str, expect: str | None = None) -> BinaryIO:
        from botocore.exceptions import BotoCoreError, ClientError

        extra = {"IfMatch": f'"{expect.split(":", 1)[1]}"'} if expect and ":" in expect else {}  # the version the poll saw, or 412
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(name), **extra)["Body"]
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code in ("NoSuchKey", "404"):
                raise NotFound(f"{name} is no longer in the source bucket") from None
            if code in ("PreconditionFailed", "412"):
                raise SourceChanged(f"{name} changed after the poll saw it; the next poll takes the new version") from None
            raise self._error(exc) from None
        except BotoCoreError as exc:
            raise self._error(exc) from None


def open_source(settings: Settings, source: str) -> Source:
    return S3Source(settings, source) if source.startswith("s3://") else FolderSource(source)


def _flat(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}{k}" if not prefix else f"{prefix}.{k}", v, out)
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        out[prefix] = str(value)


def butler_metadata(index: dict[str, Any]) -> dict[str, dict[str, str]]:
    """File name -> metadata from a butler ZipIndex: the dataset type, run and data ID of the file's first dataset.

    The index (daf_butler's ZipIndex, `index_version` V1) maps each file (`artifact_map`) to the
    ids of its datasets, and `refs` holds those datasets (serialized DatasetRefs, with
    `datasetType.name`, `run` and `dataId.dataId`)."""
    refs = index.get("refs") or {}
    by_id: dict[str, dict[str, Any]] = {}
    compact = refs.get("refs") if isinstance(refs, dict) else None
    if isinstance(compact, dict):  # SerializedDatasetRefContainerV1: {"refs": {uuid: {...}}, "dataset_types": {...}}
        types = refs.get("dataset_types") or {}
        for ref_id, ref in compact.items():
            ref = dict(ref)
            if isinstance(ref.get("dataset_type_name"), str):
                ref.setdefault("datasetType", types.get(ref["dataset_type_name"]) or {"name": ref["dataset_type_name"]})
            by_id[str(ref_id)] = ref
    elif isinstance(refs, list):
        by_id = {str(r.get("id")): r for r in refs if isinstance(r, dict)}
    out: dict[str, dict[str, str]] = {}
    for name, entry in (index.get("artifact_map") or {}).items():
        ids = entry.get("ids") if isinstance(entry, dict) else None
        ref = next((by_id[str(i)] for i in ids or [] if str(i) in by_id), None)
        meta: dict[str, str] = {}
        if ref is not None:
            data_id = ref.get("data_id") or (ref.get("dataId") or {}).get("dataId") or ref.get("dataId") or {}
            _flat("", data_id, meta)
            dtype = ref.get("datasetType") or {}
            if isinstance(dtype, dict) and dtype.get("name"):
                meta["dataset_type"] = str(dtype["name"])
            if ref.get("run"):
                meta["run"] = str(ref["run"])
            if ids:
                meta["dataset_id"] = str(ids[0])
        out[str(name)] = meta
    return out
