"""Tile layers: registered sources of WorldCRS84Quad tiles, an XYZ/TMS URL template or a local folder.

A URL template has `{z}`, `{x}` and `{y}` (row 0 at the top, XYZ) or `{-y}` (row 0 at the
bottom, TMS). A folder holds `{z}/{x}/{y}.png` (or `.jpg`), XYZ rows unless registered
with `tms`. Each layer keeps the running average of the tile sizes its exports stored, which
admission multiplies by a request's tile count.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import BigInteger, Boolean, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, mapped_column

from ..context import Context
from ..db import Base, UTCDateTime, utcnow
from ..errors import InvalidRequest, NotFound
from . import grid

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
FORMATS = {"png": "image/png", "jpeg": "image/jpeg"}
EXTENSIONS = {"png": "png", "jpeg": "jpg"}
# What a tile weighs before any export of the layer measured it (bytes, 256x256 px).
DEFAULT_TILE_BYTES = {"png": 40_000, "jpeg": 15_000}


class TileLayer(Base):
    __tablename__ = "tile_layers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    record_id: Mapped[str] = mapped_column(String(64), unique=True)  # MapColonies' recordCatalogId / dbId
    url_template: Mapped[str | None] = mapped_column(Text, nullable=True)
    folder: Mapped[str | None] = mapped_column(Text, nullable=True)
    tms: Mapped[bool] = mapped_column(Boolean, default=False)  # rows counted from the bottom
    max_zoom: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(8))
    tiles_measured: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_measured: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def kind(self) -> str:
        return "url" if self.url_template else "folder"

    @property
    def average_tile_bytes(self) -> int:
        if self.tiles_measured:
            return max(1, round(self.bytes_measured / self.tiles_measured))
        return DEFAULT_TILE_BYTES[self.format]

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    def source_of(self, zoom: int, column: int, row: int) -> str:
        """The URL or file path of one tile (row 0 at the top, as in the GeoPackage)."""
        flipped = grid.matrix_size(zoom)[1] - 1 - row
        if self.url_template:
            y = flipped if self.tms else row
            return self.url_template.replace("{z}", str(zoom)).replace("{x}", str(column)).replace("{-y}", str(flipped)).replace("{y}", str(y))
        return str(Path(self.folder or ".") / str(zoom) / str(column) / f"{flipped if self.tms else row}.{self.extension}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "recordId": self.record_id,
            "kind": self.kind,
            "source": self.url_template or self.folder,
            "tms": self.tms,
            "maxZoom": self.max_zoom,
            "maxResolutionDeg": grid.resolution(self.max_zoom),
            "format": self.format,
            "averageTileBytes": self.average_tile_bytes,
            "tilesMeasured": self.tiles_measured,
        }


def _check_template(template: str) -> str:
    parts = urlsplit(template)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"URL template must be an http(s) URL, got {template!r}", field="url_template")
    if "{z}" not in template or "{x}" not in template or ("{y}" not in template and "{-y}" not in template):
        raise InvalidRequest("URL template needs {z}, {x} and {y} (XYZ) or {-y} (TMS)", field="url_template")
    return template


def add_layer(
    ctx: Context, name: str, url_template: str | None = None, folder: str | None = None, max_zoom: int = 18,
    fmt: str = "png", tms: bool = False, record_id: str | None = None,
) -> TileLayer:
    """Register a layer, or update the one of that name."""
    if not NAME.match(name or ""):
        raise InvalidRequest("layer name: lower-case letters, digits, '.', '_' or '-' (at most 64)", field="name")
    if bool(url_template) == bool(folder):
        raise InvalidRequest("a layer has either a URL template or a folder", field="source")
    if url_template:
        url_template = _check_template(url_template)
        tms = tms or "{-y}" in url_template
    else:
        path = Path(folder).expanduser().resolve()  # type: ignore[arg-type]
        if not path.is_dir():
            raise InvalidRequest(f"folder {path} does not exist", field="folder")
        folder = str(path)
    if not isinstance(max_zoom, int) or not 0 <= max_zoom <= grid.MAX_ZOOM:
        raise InvalidRequest(f"max zoom must be 0 to {grid.MAX_ZOOM}", field="max_zoom")
    if fmt not in FORMATS:
        raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}", field="format")
    with ctx.db.session() as s:
        layer = s.scalars(select(TileLayer).where(TileLayer.name == name)).first()
        if layer is None:
            layer = TileLayer(name=name, record_id=record_id or str(uuid.uuid4()), tiles_measured=0, bytes_measured=0)
            s.add(layer)
        elif record_id:
            layer.record_id = record_id
        layer.url_template, layer.folder, layer.tms = url_template or None, folder or None, tms
        layer.max_zoom, layer.format, layer.updated_at = max_zoom, fmt, utcnow()
        s.flush()
        return layer


def get_layer(ctx: Context, name_or_record: str) -> TileLayer:
    with ctx.db.session() as s:
        layer = s.scalars(select(TileLayer).where((TileLayer.name == name_or_record) | (TileLayer.record_id == name_or_record))).first()
    if layer is None:
        raise NotFound(f"no tile layer {name_or_record!r} (see `exporter layers list`)")
    return layer


def list_layers(ctx: Context) -> list[TileLayer]:
    with ctx.db.session() as s:
        return list(s.scalars(select(TileLayer).order_by(TileLayer.name)))


def measure(ctx: Context, name: str, tiles: int, size: int) -> None:
    """Add what an export stored to the layer's running tile-size average."""
    if tiles <= 0:
        return
    with ctx.db.session() as s:
        s.execute(
            update(TileLayer)
            .where(TileLayer.name == name)
            .values(tiles_measured=TileLayer.tiles_measured + tiles, bytes_measured=TileLayer.bytes_measured + size, updated_at=utcnow())
        )
