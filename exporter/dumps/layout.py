"""Where a dump's objects live and how the mirror names its files: shared by publisher and client.

Under `dumps/<agency>/` in public storage:
- `LATEST.json`: written last; names the newest change-set manifest, the latest snapshot and
  the oldest change set still kept.
- `changes/<seq>.json`: the manifest of change set `seq` (chained by the previous one's sha256).
- `snapshots/<seq>.json`: a full snapshot equal to the dump after change set `seq`.
- `parts/<seq>-<run>/<stem>-<n>.jsonl.gz`: immutable data parts, one JSON object a line:
  `{"op": "upsert", "id": handle, "full": bool, "record": {...}}` or
  `{"op": "delete", "id": handle, "reason": "deleted" | "left_scope" | "embargoed"}`.
Every key a manifest gives is relative to the dump's folder.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote

ROOT = "dumps/"
LATEST = "LATEST.json"
CHANGES_SCHEMA = "exporter-dump-changes/1"
SNAPSHOT_SCHEMA = "exporter-dump-snapshot/1"
LATEST_SCHEMA = "exporter-dump-latest/1"


def folder(agency: str) -> str:
    return f"{ROOT}{agency}/"


def changes_key(seq: int) -> str:
    return f"changes/{seq:010d}.json"


def snapshot_key(seq: int) -> str:
    return f"snapshots/{seq:010d}.json"


def part_key(seq: int, run_id: str, stem: str, n: int) -> str:
    return f"parts/{seq:010d}-{run_id}/{stem}-{n:05d}.jsonl.gz"


def is_relative_key(key: object) -> bool:
    """A key a manifest may name: a plain relative path inside the dump's folder (no scheme, no .., no query)."""
    if not isinstance(key, str) or not key or len(key) > 1024 or key.startswith("/") or any(c in key for c in "\\?#%:") or any(ord(c) < 32 for c in key):
        return False
    return all(seg not in ("", ".", "..") for seg in key.split("/"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the mirror's files ----------------------------------------------------------------------

MAX_NAME = 200


def _safe(text: str) -> str:
    """Letters, digits and . _ - ~ as they are; '/' as '+'; anything else %-escaped (so '+' never clashes)."""
    return quote(text, safe="._-~").replace("%2F", "+")


def shard(handle: str) -> str:
    """The folder of a raid's file: the last three characters of its handle's suffix, as ORCID's dump does."""
    suffix = handle.rstrip("/").rsplit("/", 1)[-1]
    name = _safe(suffix[-3:].rjust(3, "_"))
    return "_" + name if name.startswith(".") else name


def file_name(handle: str, ext: str) -> str:
    """The handle made safe as a file name (scheme dropped); a very long one is named by its sha256."""
    bare = handle.split("://", 1)[-1]
    name = _safe(bare)
    if len(name) > MAX_NAME or name.startswith("."):
        name = sha256(handle.encode())
    return f"{name}.{ext}"


def relative_path(handle: str, ext: str) -> str:
    return f"{shard(handle)}/{file_name(handle, ext)}"
