"""A region of interest: a GeoJSON FeatureCollection whose features carry `maxResolutionDeg`
(and optionally `minResolutionDeg`), parsed and checked with shapely, and the tiles it covers.

Every error is an InvalidRequest whose field names the feature and the problem
(`roi.features[2].geometry`). Polygons and MultiPolygons only; holes are respected; a ring
that jumps more than 180 degrees of longitude between two vertices is taken to cross the
antimeridian (RFC 7946 asks for such rings to be cut; many clients send them whole; a jump of
exactly 360, from -180 to 180, is an edge along the whole world), as is one with
longitudes beyond +-180: both are cut at the antimeridian and the parts folded
back into [-180, 180].
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
import shapely.affinity
from shapely.geometry import MultiPolygon, Polygon, box, mapping
from shapely.validation import explain_validity

from ..errors import InvalidRequest
from . import grid

FIELD = "roi"
MAX_FEATURES = 100
MAX_VERTICES = 100_000
RESOLUTION_KEYS = ("maxResolutionDeg", "minResolutionDeg")
ROWS_AT_ONCE = 4096  # tiles tested together: bounds memory and how far a count overshoots its limit
COLUMNS_AT_ONCE = 1024  # columns cut from the geometry together


@dataclass(frozen=True)
class RoiFeature:
    geometry: Polygon | MultiPolygon  # in [-180, 180] x [-90, 90], antimeridian already cut
    min_zoom: int
    max_zoom: int
    properties: dict[str, Any]  # the feature's resolutions as sent
    source: dict[str, Any]  # the feature's GeoJSON geometry as sent


@dataclass(frozen=True)
class Roi:
    features: tuple[RoiFeature, ...]

    @property
    def min_zoom(self) -> int:
        return min(f.min_zoom for f in self.features)

    @property
    def max_zoom(self) -> int:
        return max(f.max_zoom for f in self.features)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return tuple(float(v) for v in shapely.union_all([f.geometry for f in self.features]).bounds)  # type: ignore[return-value]

    def at_zoom(self, zoom: int):
        """The union of the features whose zoom range includes `zoom` (None if none does)."""
        parts = [f.geometry for f in self.features if f.min_zoom <= zoom <= f.max_zoom]
        return shapely.union_all(parts) if parts else None

    def feature_collection(self) -> dict[str, Any]:
        """The ROI as clients sent it (geometry and resolutions, nothing else)."""
        return {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": dict(f.properties), "geometry": f.source} for f in self.features]}


def _field(index: int, rest: str = "") -> str:
    return f"{FIELD}.features[{index}]{rest}"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positions(coords: Any, depth: int, where: str) -> None:
    """Check the nesting of GeoJSON coordinates: `depth` levels of arrays above [lon, lat]."""
    if depth == 0:
        if not isinstance(coords, list) or len(coords) < 2 or not all(_number(c) for c in coords[:2]):
            raise InvalidRequest("each position must be [longitude, latitude] numbers", field=where)
        lon, lat = coords[0], coords[1]
        if not -90 <= lat <= 90:
            raise InvalidRequest(f"latitude {lat} is outside [-90, 90]", field=where)
        if not -540 <= lon <= 540:
            raise InvalidRequest(f"longitude {lon} is outside [-180, 180] (or [-540, 540] for a ring crossing the antimeridian)", field=where)
        return
    if not isinstance(coords, list) or not coords:
        raise InvalidRequest("coordinates are empty or not nested as GeoJSON asks", field=where)
    for c in coords:
        _positions(c, depth - 1, where)


def _unwrap(ring: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """The ring with longitudes made continuous (a jump over 180 degrees crosses the antimeridian)."""
    out: list[tuple[float, float]] = []
    shift = 0.0
    prev = None
    for pos in ring:
        lon, lat = float(pos[0]), float(pos[1])
        if prev is not None:
            step = lon + shift - prev
            if 180 < step < 360:
                shift -= 360
            elif -360 < step < -180:
                shift += 360
        prev = lon + shift
        out.append((prev, lat))
    return out


def _fold(geom) -> Polygon | MultiPolygon:
    """Cut a geometry at the antimeridian(s) and move the parts into [-180, 180]."""
    minx, _, maxx, _ = geom.bounds
    if minx >= -180 and maxx <= 180:
        return geom
    parts = []
    for offset in (-720, -360, 0, 360, 720):
        window = box(-180 - offset, -90, 180 - offset, 90)
        piece = geom.intersection(window)
        if not piece.is_empty:
            parts.append(shapely.affinity.translate(piece, xoff=offset))
    folded = shapely.union_all(parts)
    polys = [g for g in getattr(folded, "geoms", [folded]) if isinstance(g, Polygon) and g.area > 0]
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def _geometry(raw: Any, index: int) -> tuple[Polygon | MultiPolygon, dict[str, Any]]:
    where = _field(index, ".geometry")
    if not isinstance(raw, dict):
        raise InvalidRequest("a feature needs a geometry object (Polygon or MultiPolygon)", field=where)
    kind = raw.get("type")
    if kind not in ("Polygon", "MultiPolygon"):
        raise InvalidRequest(f"geometry type must be Polygon or MultiPolygon, got {kind!r}", field=where + ".type")
    coords = raw.get("coordinates")
    _positions(coords, 2 if kind == "Polygon" else 3, where + ".coordinates")
    polygons = [coords] if kind == "Polygon" else coords
    vertices = sum(len(ring) for poly in polygons for ring in poly)
    if vertices > MAX_VERTICES:
        raise InvalidRequest(f"the geometry has {vertices} vertices; at most {MAX_VERTICES} are accepted", field=where)
    built = []
    for p, poly in enumerate(polygons):
        for r, ring in enumerate(poly):
            at = f"{where}.coordinates" + (f"[{p}]" if kind == "MultiPolygon" else "") + f"[{r}]"
            if len(ring) < 4:
                raise InvalidRequest("a linear ring needs at least 4 positions", field=at)
            if list(ring[0][:2]) != list(ring[-1][:2]):
                raise InvalidRequest("a linear ring must end where it starts (first and last positions equal)", field=at)
        rings = [_unwrap(ring) for ring in poly]
        built.append(Polygon(rings[0], rings[1:]))
    geom = built[0] if kind == "Polygon" else MultiPolygon(built)
    if not geom.is_valid:
        raise InvalidRequest(f"invalid geometry: {explain_validity(geom)}", field=where)
    if geom.area <= 0:
        raise InvalidRequest("the geometry has no area", field=where)
    return _fold(geom), {"type": kind, "coordinates": coords}


def _resolution(props: dict[str, Any], key: str, index: int, required: bool) -> int | None:
    where = _field(index, f".properties.{key}")
    value = props.get(key)
    if value is None:
        if required:
            raise InvalidRequest(f"{key} is required (degrees per pixel, e.g. 0.0001717 for zoom 12)", field=where)
        return None
    if not _number(value) or value <= 0:
        raise InvalidRequest(f"{key} must be a positive number of degrees per pixel, got {value!r}", field=where)
    zoom = grid.zoom_for_resolution(float(value))
    if zoom is None:
        raise InvalidRequest(f"{key} {value} is finer than zoom {grid.MAX_ZOOM} ({grid.resolution(grid.MAX_ZOOM):.3g} degrees per pixel)", field=where)
    return zoom


def parse_roi(raw: Any, max_zoom: int = grid.MAX_ZOOM) -> Roi:
    """Parse and check a FeatureCollection; `max_zoom` is the finest zoom the layer has."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"roi is not JSON: {exc}", field=FIELD) from None
        except RecursionError:
            raise InvalidRequest("roi is nested too deeply to be read", field=FIELD) from None
    if not isinstance(raw, dict) or raw.get("type") != "FeatureCollection":
        raise InvalidRequest("roi must be a GeoJSON FeatureCollection", field=FIELD)
    features = raw.get("features")
    if not isinstance(features, list) or not features:
        raise InvalidRequest("roi.features must be a non-empty list of features", field=f"{FIELD}.features")
    if len(features) > MAX_FEATURES:
        raise InvalidRequest(f"roi has {len(features)} features; at most {MAX_FEATURES} are accepted", field=f"{FIELD}.features")
    out = []
    for i, feat in enumerate(features):
        if not isinstance(feat, dict) or feat.get("type") != "Feature":
            raise InvalidRequest("each item of roi.features must be a GeoJSON Feature", field=_field(i))
        props = feat.get("properties")
        if not isinstance(props, dict):
            raise InvalidRequest("a feature needs properties with maxResolutionDeg", field=_field(i, ".properties"))
        top = _resolution(props, "maxResolutionDeg", i, True)
        low = _resolution(props, "minResolutionDeg", i, False)
        low = 0 if low is None else low
        if low > top:
            raise InvalidRequest("minResolutionDeg must not be finer than maxResolutionDeg", field=_field(i, ".properties.minResolutionDeg"))
        if top > max_zoom:
            raise InvalidRequest(
                f"maxResolutionDeg {props['maxResolutionDeg']} (zoom {top}) is finer than the layer has (zoom {max_zoom}, {grid.resolution(max_zoom):.7g} degrees per pixel)",
                field=_field(i, ".properties.maxResolutionDeg"),
            )
        geom, source = _geometry(feat.get("geometry"), i)
        kept = {k: props[k] for k in RESOLUTION_KEYS if props.get(k) is not None}
        out.append(RoiFeature(geometry=geom, min_zoom=low, max_zoom=top, properties=kept, source=source))
    return Roi(tuple(out))


def _hits(geom, zoom: int, runs: list[tuple[int, int, int]]) -> Iterator[tuple[int, np.ndarray]]:
    """(column, rows) of each run (column, first row, stop row) whose tiles share area with
    `geom` (touching an edge is not enough), every tile of the runs tested in one call."""
    size = grid.tile_degrees(zoom)
    lengths = np.array([stop - first for _, first, stop in runs])
    columns = np.repeat(np.array([c for c, _, _ in runs], dtype=float), lengths)
    rows = np.concatenate([np.arange(first, stop) for _, first, stop in runs])
    wests, norths = -180.0 + columns * size, 90.0 - rows * size
    boxes = shapely.box(wests, norths - size, wests + size, norths)
    hit = shapely.intersects(geom, boxes) & ~shapely.touches(geom, boxes)
    at = 0
    for (column, _, _), n in zip(runs, lengths.tolist(), strict=True):
        found = rows[at : at + n][hit[at : at + n]]
        at += n
        if found.size:
            yield column, found


def tiles_at(geom, zoom: int) -> Iterator[tuple[int, np.ndarray]]:
    """(column, rows) of every tile at `zoom` that shares area with `geom`, column by column,
    top to bottom; a long column comes as several runs of rows. Columns are cut from `geom`
    COLUMNS_AT_ONCE at a time and tiles tested about ROWS_AT_ONCE at a time, so neither a
    column of 16 million rows (zoom 24) nor millions of one-row columns costs more than that."""
    shapely.prepare(geom)
    west, _, east, _ = geom.bounds
    size = grid.tile_degrees(zoom)
    span = grid.column_range(zoom, west, east)
    runs: list[tuple[int, int, int]] = []
    pending = 0
    for first in range(span.start, span.stop, COLUMNS_AT_ONCE):
        columns = np.arange(first, min(first + COLUMNS_AT_ONCE, span.stop))
        wests = -180.0 + columns * size
        parts = shapely.intersection(geom, shapely.box(wests, -90.0, wests + size, 90.0))
        keep = shapely.area(parts) > 0
        for column, (_, s, _, n) in zip(columns[keep].tolist(), shapely.bounds(parts[keep]).tolist(), strict=True):
            rows = grid.row_range(zoom, s, n)
            for start in range(rows.start, rows.stop, ROWS_AT_ONCE):
                stop = min(start + ROWS_AT_ONCE, rows.stop)
                runs.append((column, start, stop))
                pending += stop - start
                if pending >= ROWS_AT_ONCE:
                    yield from _hits(geom, zoom, runs)
                    runs, pending = [], 0
    if runs:
        yield from _hits(geom, zoom, runs)


def iter_tiles(roi: Roi) -> Iterator[tuple[int, int, np.ndarray]]:
    """(zoom, column, rows) for every zoom of the ROI, each tile once whatever the features overlap
    (a long column comes as several runs of rows, top to bottom)."""
    for zoom in range(roi.min_zoom, roi.max_zoom + 1):
        geom = roi.at_zoom(zoom)
        if geom is None:
            continue
        for column, rows in tiles_at(geom, zoom):
            yield zoom, column, rows


def least_tiles(roi: Roi) -> int:
    """A lower bound of the tiles the ROI covers, from bounds alone: at each zoom, a polygon
    whose interior spans n columns (or n rows) has area in a tile of each of them."""
    total = 0
    for zoom in range(roi.min_zoom, roi.max_zoom + 1):
        geom = roi.at_zoom(zoom)
        if geom is None:
            continue
        spans = [(len(grid.column_range(zoom, w, e)), len(grid.row_range(zoom, s, n))) for w, s, e, n in (p.bounds for p in getattr(geom, "geoms", [geom]))]
        total += max(max(spans))
    return total


def count_tiles(roi: Roi, limit: int | None = None) -> int:
    """How many tiles the ROI covers; stops counting once past `limit` (returns a number above it),
    at once when the ROI's bounds already say so (a thin strip across the world at zoom 24)."""
    if limit is not None and (least := least_tiles(roi)) > limit:
        return least
    total = 0
    for _, _, rows in iter_tiles(roi):
        total += int(rows.size)
        if limit is not None and total > limit:
            return total
    return total


def geometry_json(geom) -> dict[str, Any]:
    return mapping(geom)
