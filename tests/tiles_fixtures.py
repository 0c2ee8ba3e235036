"""Tile sources for the tiles tests and benchmark: generated PNG tiles in a folder, served by nginx."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

from exporter.tiles import grid
from exporter.tiles.roi import iter_tiles, parse_roi


def png(seed: int, size: int = grid.TILE_SIZE, noise: int = 0) -> bytes:
    """A real 8-bit greyscale PNG, different for each seed; `noise` bytes per row make it bigger."""
    rows = bytearray()
    for y in range(size):
        rows.append(0)  # filter: none
        base = (seed * 31 + y) & 0xFF
        line = bytes(((base + x) & 0xFF) for x in range(size))
        if noise:
            mixed = bytearray(line)
            state = (seed * 2654435761 + y * 40503) & 0xFFFFFFFF
            for i in range(noise):
                state = (state * 1103515245 + 12345) & 0x7FFFFFFF
                mixed[(i * 7919) % size] = state & 0xFF
            line = bytes(mixed)
        rows += line

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows), 6)) + chunk(b"IEND", b"")


def tile_seed(zoom: int, column: int, row: int) -> int:
    return zoom * 1_000_003 + column * 7_919 + row


def write_tiles(root: Path, tiles: Iterable[tuple[int, int, int]], noise: int = 0, tms: bool = False, skip: set | None = None) -> int:
    """Write `{z}/{x}/{y}.png` for each tile (row from the top, or the bottom with `tms`); returns how many."""
    count = 0
    made: set[Path] = set()
    for zoom, column, row in tiles:
        if skip and (zoom, column, row) in skip:
            continue
        y = grid.matrix_size(zoom)[1] - 1 - row if tms else row
        folder = root / str(zoom) / str(column)
        if folder not in made:
            folder.mkdir(parents=True, exist_ok=True)
            made.add(folder)
        (folder / f"{y}.png").write_bytes(png(tile_seed(zoom, column, row), noise=noise))
        count += 1
    return count


def roi_tiles(fc: dict, max_zoom: int = grid.MAX_ZOOM) -> list[tuple[int, int, int]]:
    """Every tile the ROI covers, as (zoom, column, row)."""
    return [(z, c, int(r)) for z, c, rows in iter_tiles(parse_roi(fc, max_zoom)) for r in rows]


def box_roi(west: float, south: float, east: float, north: float, max_res: float, min_res: float | None = None) -> dict:
    props = {"maxResolutionDeg": max_res}
    if min_res is not None:
        props["minResolutionDeg"] = min_res
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": props, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}


def validate_gpkg(path) -> list:
    """GDAL's own GeoPackage validator (gdal-utils' validate_gpkg.py), warnings counted as errors."""
    from osgeo_utils.samples import validate_gpkg as validator

    return validator.check(str(path), abort_at_first_error=False, warning_as_error=True, extra_checks=True)


def gdalinfo(path) -> str:
    """Debian's gdalinfo on the file; fails the test when GDAL cannot open it."""
    import shutil
    import subprocess

    binary = shutil.which("gdalinfo")
    assert binary, "gdalinfo is not installed (Debian package gdal-bin; `make test` installs it)"
    done = subprocess.run([binary, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout
