"""A tiles request: its params, its size, and the finished export that may answer it instead.

- `normalize_tiles_request(body)` turns an API body (ours: `layer`; MapColonies': `dbId`,
  the layer's record id) into job params, raising InvalidRequest naming the feature and
  the problem (`roi.features[2].geometry`);
- `normalize(params)` is the kind's own check (the same, on params already normalized);
- `estimate_size` is the tile count times the layer's average tile size (admission);
- the cache policy (exporter.submissions.CachePolicy): requests for one layer serialise; a
  finished, unexpired, fresh (CACHE_MAX_AGE) export of the same layer answers a request
  when, feature group by feature group (features of the same zoom range), the new ROI lies
  inside the old one grown by TILES_CACHE_BUFFER_METERS and covers at least
  TILES_CACHE_MIN_AREA_RATIO of its area, as MapColonies' export trigger decides. Every hit
  pushes the job's expiry to now + the kind's expiry (never back), with a compare-and-set
  on the `expires_at` it read; hits are only made while the result is younger than the
  cache max age, so a result lives at most CACHE_MAX_AGE + its expiry after it finished.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from datetime import datetime
from functools import lru_cache
from typing import Any

import shapely
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from .. import submissions
from ..context import get_context
from ..errors import InvalidRequest, NotFound
from ..expiry import cache_fresh, expires_at
from ..kinds import get_kind
from ..models import Job
from . import grid, layers
from .roi import Roi, count_tiles, parse_roi

KIND = "tiles"
BODY_FIELDS = {"kind", "layer", "dbId", "roi", "description", "callbackURLs", "crs", "priority"}
METERS_PER_DEGREE = 111_320.0
CANDIDATES = 200  # finished exports of a layer looked at per request, newest first


def _layer(ctx, name: Any, field: str) -> layers.TileLayer:
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest(f"{field} is required: the name of a tile layer (see `exporter layers list`)", field=field)
    try:
        return layers.get_layer(ctx, name.strip())
    except NotFound as exc:
        raise InvalidRequest(str(exc), field=field) from None


@lru_cache(maxsize=256)
def _count(roi_json: str, max_zoom: int, limit: int) -> int:
    return count_tiles(parse_roi(json.loads(roi_json), max_zoom), limit)


def build_params(ctx, layer: layers.TileLayer, raw_roi: Any, record_id: str | None = None) -> dict[str, Any]:
    """Job params of a tiles export of `layer` over `raw_roi` (checked; the tile count within TILES_MAX_TILES)."""
    roi = parse_roi(raw_roi, layer.max_zoom)
    fc = roi.feature_collection()
    limit = ctx.settings.tiles_max_tiles
    tiles = _count(json.dumps(fc, sort_keys=True), layer.max_zoom, limit)
    if tiles > limit:
        sizes = [count_tiles(Roi((f,)), limit) for f in roi.features]
        biggest = max(range(len(sizes)), key=sizes.__getitem__)
        alone = f"{sizes[biggest]:,}" if sizes[biggest] <= limit else f"more than {limit:,}"
        raise InvalidRequest(
            f"the region covers more than {limit:,} tiles (TILES_MAX_TILES); feature {biggest} covers the most ({alone}): "
            "ask for a smaller region or a coarser maxResolutionDeg",
            field=f"roi.features[{biggest}]",
        )
    if tiles == 0:
        raise InvalidRequest("the region covers no tile", field="roi")
    return {
        "layer": layer.name,
        "recordCatalogId": record_id or layer.record_id,
        "roi": fc,
        "minZoom": roi.min_zoom,
        "maxZoom": roi.max_zoom,
        "bbox": [round(v, 12) for v in roi.bbox],
        "tileCount": tiles,
    }


def normalize_tiles_request(body: Any, ctx=None) -> dict[str, Any]:
    """Job params from an API body: `layer` (or MapColonies' `dbId`) and `roi`; description and
    callbackURLs are for the caller to hand to `submissions.request_job`."""
    ctx = ctx or get_context()
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object", field=None)
    unknown = sorted(set(body) - BODY_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r} in a tiles request", field=unknown[0])
    crs = body.get("crs")
    if crs not in (None, "EPSG:4326"):
        raise InvalidRequest(f"only EPSG:4326 (WorldCRS84Quad) is exported, not {crs!r}", field="crs")
    if "roi" not in body:
        raise InvalidRequest("roi is required: a GeoJSON FeatureCollection whose features carry maxResolutionDeg", field="roi")
    field = "layer" if body.get("layer") is not None or body.get("dbId") is None else "dbId"
    layer = _layer(ctx, body.get(field), field)
    return build_params(ctx, layer, body["roi"])


def normalize(params: dict[str, Any]) -> dict[str, Any]:
    """The kind's normalize: the same checks on params (from the API, the CLI or `jobs submit`)."""
    ctx = get_context()
    layer = _layer(ctx, params.get("layer"), "layer")
    if "roi" not in params:
        raise InvalidRequest("roi is required: a GeoJSON FeatureCollection whose features carry maxResolutionDeg", field="roi")
    record = params.get("recordCatalogId")
    if record is not None and not isinstance(record, str):
        raise InvalidRequest("recordCatalogId must be a string", field="recordCatalogId")
    return build_params(ctx, layer, params["roi"], record)


def estimate_size(ctx, kind: str, params: dict[str, Any]) -> int:
    """Bytes the GeoPackage is expected to take: tile count x the layer's average tile size."""
    layer = layers.get_layer(ctx, params["layer"])
    return int(params["tileCount"]) * layer.average_tile_bytes


# --- the cache ---------------------------------------------------------------------------


def lock_key(kind: str, params: dict[str, Any]) -> str:
    return hashlib.sha256(f"{kind}\nlayer\n{params['layer']}".encode()).hexdigest()


def _groups(fc: dict[str, Any]) -> dict[tuple[int, int], Any]:
    """The ROI's area per zoom range: {(min zoom, max zoom): union of those features}."""
    roi: Roi = parse_roi(fc)
    parts: dict[tuple[int, int], list] = defaultdict(list)
    for f in roi.features:
        parts[(f.min_zoom, f.max_zoom)].append(f.geometry)
    return {k: shapely.union_all(v) for k, v in parts.items()}


def covers(cached_fc: dict[str, Any], wanted_fc: dict[str, Any], buffer_meters: float, min_ratio: float) -> bool:
    """Whether an export of `cached_fc` answers a request for `wanted_fc` (see the module doc)."""
    have, want = _groups(cached_fc), _groups(wanted_fc)
    if set(have) != set(want):
        return False
    grow = buffer_meters / METERS_PER_DEGREE
    for zooms, geom in want.items():
        old = have[zooms]
        if not old.buffer(grow).covers(geom):
            return False
        if old.area <= 0 or geom.area / old.area < min_ratio:
            return False
    return True


def _bbox_inside(outer: list[float], inner: list[float], grow: float) -> bool:
    return outer[0] - grow <= inner[0] and outer[1] - grow <= inner[1] and outer[2] + grow >= inner[2] and outer[3] + grow >= inner[3]


def extend(session: Session, ctx, job: Job, now: datetime) -> bool:
    """Push a cached job's expiry to now + the kind's expiry (never earlier); False if it has expired."""
    read = job.expires_at
    if read is not None and read <= now:
        return False
    new = expires_at(ctx.settings, job.kind, get_kind(job.kind).expiry_seconds, now)
    if read is None or (new is not None and new <= read):
        return True
    res = session.execute(
        update(Job).where(Job.id == job.id, Job.status == "succeeded", Job.expires_at == read).values(expires_at=new).execution_options(synchronize_session=False)
    )
    if res.rowcount == 1:
        job.expires_at = new
        return True
    return False


def find_cached(session: Session, ctx, kind: str, params: dict[str, Any], now: datetime) -> Job | None:
    """The newest finished export of the layer whose ROI covers this one (its expiry pushed forward)."""
    s = ctx.settings
    grow = s.tiles_cache_buffer_meters / METERS_PER_DEGREE
    candidates = session.scalars(
        select(Job)
        .options(selectinload(Job.artifacts))
        .where(Job.kind == kind, Job.status == "succeeded", Job.params["layer"].as_string() == params["layer"])
        .order_by(Job.finished_at.desc())
        .limit(CANDIDATES)
    )
    for job in candidates:
        old = job.params or {}
        if job.expires_at is not None and job.expires_at <= now:
            continue
        if not cache_fresh(s, kind, job.finished_at, now) or any(a.deleted_at is not None for a in job.artifacts):
            continue
        if old.get("minZoom") != params["minZoom"] or old.get("maxZoom") != params["maxZoom"] or not _bbox_inside(old.get("bbox") or [0, 0, 0, 0], params["bbox"], grow):
            continue
        if covers(old["roi"], params["roi"], s.tiles_cache_buffer_meters, s.tiles_cache_min_area_ratio) and extend(session, ctx, job, now):
            return job
    return None


submissions.CACHE_POLICIES[KIND] = submissions.CachePolicy(lock_key=lock_key, find_cached=find_cached, extend=extend)


def resolution_table() -> list[dict[str, float]]:
    """The zoom levels and their resolutions (degrees per pixel), as clients pick maxResolutionDeg."""
    return [{"zoom": z, "resolutionDeg": grid.resolution(z)} for z in range(grid.MAX_ZOOM + 1)]
