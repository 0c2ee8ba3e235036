"""The WorldCRS84Quad tiling scheme (EPSG:4326): zoom 0 is 2x1 tiles of 256 px at
0.703125 degrees per pixel, each next zoom halves the resolution; row 0 is at the top."""

from __future__ import annotations

import math

TILE_SIZE = 256
ZOOM0_RESOLUTION = 0.703125  # degrees per pixel at zoom 0: 180 degrees / 256 px
MAX_ZOOM = 24
RESOLUTION_TOLERANCE = 0.01  # a value within 1% of a level's resolution is that level
WORLD = (-180.0, -90.0, 180.0, 90.0)
TILING_SCHEME = "WorldCRS84Quad"


def resolution(zoom: int) -> float:
    """Degrees per pixel at `zoom`."""
    return ZOOM0_RESOLUTION / 2**zoom


def tile_degrees(zoom: int) -> float:
    """Width and height of one tile in degrees."""
    return 180.0 / 2**zoom


def matrix_size(zoom: int) -> tuple[int, int]:
    """(columns, rows) of the tile matrix at `zoom`."""
    return 2 ** (zoom + 1), 2**zoom


def zoom_for_resolution(value: float) -> int | None:
    """The zoom level a resolution in degrees per pixel asks for, or None when it is finer than MAX_ZOOM.

    A value within 1% of a level's resolution is that level (clients send rounded table
    values such as 0.0001717 for zoom 12); a value between two levels takes the finer one;
    one coarser than zoom 0 is zoom 0.
    """
    for zoom in range(MAX_ZOOM + 1):
        res = resolution(zoom)
        if abs(value - res) <= res * RESOLUTION_TOLERANCE:
            return zoom
        if value > res:
            return zoom
    return None


def tile_bounds(zoom: int, column: int, row: int) -> tuple[float, float, float, float]:
    """(min lon, min lat, max lon, max lat) of a tile."""
    size = tile_degrees(zoom)
    west = -180.0 + column * size
    north = 90.0 - row * size
    return west, north - size, west + size, north


def column_range(zoom: int, west: float, east: float) -> range:
    """Columns whose tiles overlap [west, east] (a touching edge does not count)."""
    size = tile_degrees(zoom)
    cols, _ = matrix_size(zoom)
    first = max(0, math.floor((west + 180.0) / size))
    last = min(cols - 1, math.ceil((east + 180.0) / size) - 1)
    return range(first, max(first, last) + 1) if last >= first else range(0)


def row_range(zoom: int, south: float, north: float) -> range:
    """Rows whose tiles overlap [south, north] (a touching edge does not count)."""
    size = tile_degrees(zoom)
    _, rows = matrix_size(zoom)
    first = max(0, math.floor((90.0 - north) / size))
    last = min(rows - 1, math.ceil((90.0 - south) / size) - 1)
    return range(first, max(first, last) + 1) if last >= first else range(0)
