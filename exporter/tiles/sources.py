"""Reading one tile from a layer: a local folder, or HTTP(S) through the archiver's safe client
(address checks at connect time, per-host politeness slots, bounded retries)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..archiver.fetch import FetchOptions, fetch
from ..archiver.policy import HostSlots
from ..archiver.sessions import session_for
from ..context import Context
from ..errors import ExporterError, TransientError
from ..storage.base import ObjectInfo
from .layers import TileLayer

HOLD_SECONDS = 5.0  # a fetch thread gives its host slot back this often, so others get a turn


@dataclass(frozen=True)
class Tile:
    zoom: int
    column: int
    row: int
    data: bytes | None  # None: missing at the source
    reason: str | None = None


def image_kind(data: bytes) -> str | None:
    """png, jpeg or webp from the first bytes, None for anything else (an error page, say)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def checked(zoom: int, column: int, row: int, data: bytes, where: str) -> Tile:
    if not data:
        return Tile(zoom, column, row, None, f"empty tile at {where}")
    if image_kind(data) is None:
        return Tile(zoom, column, row, None, f"not a PNG, JPEG or WebP image at {where}")
    return Tile(zoom, column, row, data)


class TileSourceError(ExporterError):
    """The layer cannot be read at all (a refused address, a broken URL): the export fails."""


class FolderSource:
    """Tiles from `{folder}/{z}/{x}/{y}.{ext}`; a file that is not there is a missing tile."""

    threads = 1

    def __init__(self, layer: TileLayer, max_bytes: int):
        self.layer = layer
        self.max_bytes = max_bytes

    @contextmanager
    def session(self) -> Iterator[Callable[[int, int, int], Tile]]:
        def read(zoom: int, column: int, row: int) -> Tile:
            path = Path(self.layer.source_of(zoom, column, row))
            try:
                with open(path, "rb") as fh:
                    data = fh.read(self.max_bytes + 1)
            except FileNotFoundError:
                return Tile(zoom, column, row, None, "no such file")
            if len(data) > self.max_bytes:
                return Tile(zoom, column, row, None, f"larger than {self.max_bytes} bytes")
            return checked(zoom, column, row, data, str(path))

        yield read


class _MemorySink:
    """Collects one small body in memory (a tile is capped at TILES_MAX_TILE_BYTES)."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.info: ObjectInfo | None = None

    @contextmanager
    def open(self, filename: str, mimetype: str | None):
        self.buffer = io.BytesIO()
        yield self.buffer
        self.info = ObjectInfo(key=filename, size=self.buffer.tell(), content_type=mimetype)


MISSING_STATUSES = frozenset({204, 404, 410})


class HttpSource:
    """Tiles over HTTP(S): each fetch thread holds one of the host's politeness slots for a
    few seconds at a time and waits its turn (ARCHIVER_HOST_DELAY_MS) before every request."""

    def __init__(self, ctx: Context, layer: TileLayer, max_bytes: int, threads: int):
        s = ctx.settings
        self.ctx = ctx
        self.layer = layer
        self.host = (urlsplit(layer.url_template or "").hostname or "").lower()
        self.threads = max(1, min(threads, s.archiver_host_concurrency))
        self.options = FetchOptions.from_settings(s, max_bytes=max_bytes, skip_content_types=("text/html", "application/xhtml+xml"), chunk_bytes=max(65536, min(max_bytes, 1 << 20)))
        per_request = 3 * (s.archiver_connect_timeout + s.archiver_read_timeout) + 2 * s.archiver_retry_after_max + 4 * s.archiver_retry_backoff_ms / 1000
        self.slots = HostSlots(ctx, s.archiver_host_concurrency, s.archiver_host_delay_ms / 1000, lease_seconds=HOLD_SECONDS + per_request + 30)

    @contextmanager
    def session(self) -> Iterator[Callable[[int, int, int], Tile]]:
        http = session_for(self.ctx)
        held = None
        until = 0.0
        turn: Callable[[], None] | None = None
        try:

            def read(zoom: int, column: int, row: int) -> Tile:
                nonlocal held, until, turn
                if held is None or time.monotonic() > until:
                    if held is not None:
                        held.__exit__(None, None, None)
                        held = None
                    held = self.slots.hold(self.host)
                    turn = held.__enter__()
                    until = time.monotonic() + HOLD_SECONDS
                url = self.layer.source_of(zoom, column, row)
                sink = _MemorySink()
                result = fetch(http, url, self.options, sink=sink, before_attempt=turn)
                return self._tile(zoom, column, row, url, result, sink)

            yield read
        finally:
            if held is not None:
                held.__exit__(None, None, None)

    @staticmethod
    def _tile(zoom: int, column: int, row: int, url: str, result, sink: _MemorySink) -> Tile:
        if result.status_id == 0 and result.stored is not None:
            data = sink.buffer.getvalue()
            if result.http_status in MISSING_STATUSES or not data:
                return Tile(zoom, column, row, None, f"HTTP {result.http_status}")
            return checked(zoom, column, row, data, url)
        if result.status_id == 10:
            raise TileSourceError(f"tile {zoom}/{column}/{row}: {result.reason}")
        code = result.http_status
        if result.status_id == 12 and code is not None and 400 <= code < 500 and code != 429:  # "Download error" with a 4xx: the tile is not there
            return Tile(zoom, column, row, None, f"HTTP {code}")
        if result.status_id == 21:
            return Tile(zoom, column, row, None, result.reason or "not stored")
        raise TransientError(f"tile {zoom}/{column}/{row} from {urlsplit(url).netloc}: {result.reason}")


def open_source(ctx: Context, layer: TileLayer) -> FolderSource | HttpSource:
    s = ctx.settings
    if layer.url_template:
        return HttpSource(ctx, layer, s.tiles_max_tile_bytes, s.tiles_fetch_threads)
    return FolderSource(layer, s.tiles_max_tile_bytes)
