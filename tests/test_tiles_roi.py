"""The WorldCRS84Quad grid and the ROI: resolutions to zoom levels, checks that name the
feature and the problem, holes, the antimeridian, and every tile once."""

from __future__ import annotations

import itertools

import pytest

from exporter.errors import InvalidRequest
from exporter.tiles import grid
from exporter.tiles import roi as roi_module
from exporter.tiles.roi import count_tiles, iter_tiles, parse_roi
from tests.tiles_fixtures import box_roi, roi_tiles

Z12 = 0.0001717  # MapColonies' table value for zoom 12 (0.000171661...)


def feature(coords, max_res=Z12, kind="Polygon", **props):
    return {"type": "Feature", "properties": {"maxResolutionDeg": max_res, **props}, "geometry": {"type": kind, "coordinates": coords}}


def fc(*features):
    return {"type": "FeatureCollection", "features": list(features)}


SQUARE = [[[35.0, 31.9], [35.1, 31.9], [35.1, 32.0], [35.0, 32.0], [35.0, 31.9]]]


def test_zoom_0_is_two_tiles_of_0_703125_degrees_per_pixel_halving_per_zoom():
    assert grid.matrix_size(0) == (2, 1) and grid.resolution(0) == 0.703125
    assert grid.matrix_size(3) == (16, 8) and grid.resolution(3) == 0.703125 / 8
    assert grid.tile_bounds(0, 0, 0) == (-180.0, -90.0, 0.0, 90.0)
    assert grid.tile_bounds(1, 3, 0) == (90.0, 0.0, 180.0, 90.0)  # row 0 at the top


@pytest.mark.parametrize(
    "value, zoom",
    [
        (0.703125, 0), (5.0, 0), (0.0001717, 12), (0.000171661376953125, 12), (0.000171661 * 1.009, 12),
        (0.000171661 * 1.02, 12), (0.000171661 * 1.5, 12), (0.000171661 * 0.98, 13), (0.0439453125, 4), (0.044, 4),
    ],
)
def test_a_resolution_within_1_percent_is_that_level_else_the_finer_one(value, zoom):
    assert grid.zoom_for_resolution(value) == zoom


def test_the_finer_level_for_a_value_between_two():
    res11, res12 = grid.resolution(11), grid.resolution(12)
    assert grid.zoom_for_resolution((res11 + res12) / 2) == 12
    assert grid.zoom_for_resolution(res11 * 0.985) == 12  # just outside 1% of zoom 11
    assert grid.zoom_for_resolution(res11 * 0.995) == 11


def test_each_feature_picks_its_zoom_range():
    roi = parse_roi(fc(feature(SQUARE, minResolutionDeg=0.0439453125)))
    (f,) = roi.features
    assert (f.min_zoom, f.max_zoom) == (4, 12)
    assert roi.feature_collection()["features"][0]["properties"] == {"maxResolutionDeg": Z12, "minResolutionDeg": 0.0439453125}


@pytest.mark.parametrize(
    "body, field, words",
    [
        ("not json", "roi", "not JSON"),
        ("[" * 100_000 + "]" * 100_000, "roi", "nested too deeply"),
        ({"type": "Feature"}, "roi", "FeatureCollection"),
        (fc(), "roi.features", "non-empty"),
        (fc(feature(SQUARE), feature(SQUARE), {"type": "Feature", "properties": {"maxResolutionDeg": Z12}}), "roi.features[2].geometry", "needs a geometry"),
        (fc(feature(SQUARE), feature(SQUARE), feature([[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]])), "roi.features[2].geometry", "Self-intersection"),
        (fc(feature(SQUARE, kind="LineString")), "roi.features[0].geometry.type", "Polygon or MultiPolygon"),
        (fc(feature([[[0, 0], [1, 0], [1, 1], [0, 0.5]]])), "roi.features[0].geometry.coordinates[0]", "end where it starts"),
        (fc(feature([[[0, 0], [1, 0], [0, 0]]])), "roi.features[0].geometry.coordinates[0]", "at least 4"),
        (fc(feature([[[0, 0], [1, 0], [1, 95], [0, 0]]])), "roi.features[0].geometry.coordinates", "latitude 95"),
        (fc(feature([[["a", 0], [1, 0], [1, 1], ["a", 0]]])), "roi.features[0].geometry.coordinates", "numbers"),
        (fc(feature(SQUARE, max_res=None)), "roi.features[0].properties.maxResolutionDeg", "required"),
        (fc(feature(SQUARE, max_res=-1)), "roi.features[0].properties.maxResolutionDeg", "positive"),
        (fc(feature(SQUARE, max_res=1e-9)), "roi.features[0].properties.maxResolutionDeg", "finer than zoom 24"),
        (fc(feature(SQUARE, minResolutionDeg=1e-5)), "roi.features[0].properties.minResolutionDeg", "must not be finer"),
        (fc(feature([[[0, 0], [1, 0], [2, 0], [0, 0]]])), "roi.features[0].geometry", "invalid geometry"),
    ],
)
def test_bad_input_names_the_feature_and_the_problem(body, field, words):
    with pytest.raises(InvalidRequest) as caught:
        parse_roi(body)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_a_resolution_finer_than_the_layer_has_is_refused():
    with pytest.raises(InvalidRequest) as caught:
        parse_roi(fc(feature(SQUARE), feature(SQUARE, max_res=grid.resolution(15))), max_zoom=14)
    assert caught.value.field == "roi.features[1].properties.maxResolutionDeg"
    assert "finer than the layer has (zoom 14" in str(caught.value)


def test_tiles_inside_a_hole_are_not_exported():
    # Zoom 2 tiles are 45 degrees: an 8x4-tile ring around a 2x2-tile hole.
    outer = [[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]]
    hole = [[-45, -45], [45, -45], [45, 45], [-45, 45], [-45, -45]]
    with_hole = parse_roi(fc(feature([outer, hole], max_res=grid.resolution(2), minResolutionDeg=grid.resolution(2))))
    assert count_tiles(with_hole) == 8 * 4 - 4


def test_edges_that_only_touch_a_tile_do_not_take_it():
    size = grid.tile_degrees(3)
    exact = box_roi(0, 0, 2 * size, size, grid.resolution(3), grid.resolution(3))
    assert sorted(roi_tiles(exact)) == [(3, 8, 3), (3, 9, 3)]


def test_overlapping_features_write_each_tile_once():
    a = feature([[[0, 0], [40, 0], [40, 40], [0, 40], [0, 0]]], max_res=grid.resolution(3))
    b = feature([[[20, 20], [60, 20], [60, 60], [20, 60], [20, 20]]], max_res=grid.resolution(4))
    tiles = roi_tiles(fc(a, b))
    assert len(tiles) == len(set(tiles))
    assert {z for z, _, _ in tiles} == {0, 1, 2, 3, 4}


def test_a_polygon_across_the_antimeridian_is_cut_and_folded():
    res = grid.resolution(4)  # 11.25-degree tiles
    crossing = fc(feature([[[170, 10], [-170, 10], [-170, 20], [170, 20], [170, 10]]], max_res=res, minResolutionDeg=res))
    beyond = fc(feature([[[170, 10], [190, 10], [190, 20], [170, 20], [170, 10]]], max_res=res, minResolutionDeg=res))
    roi = parse_roi(crossing)
    assert roi.features[0].geometry.geom_type == "MultiPolygon"
    assert roi.bbox == (-180.0, 10.0, 180.0, 20.0)
    cols = {c for _, c, _ in roi_tiles(crossing)}
    assert cols == {0, 31} and sorted(roi_tiles(crossing)) == sorted(roi_tiles(beyond))
    assert roi.feature_collection()["features"][0]["geometry"]["coordinates"][0][1] == [-170, 10]  # kept as sent


def test_multipolygons_and_counting_stops_past_the_limit():
    parts = [[[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]], [[[50, 50], [60, 50], [60, 60], [50, 60], [50, 50]]]]
    roi = parse_roi(fc(feature(parts, max_res=grid.resolution(8), kind="MultiPolygon")))
    full = count_tiles(roi)
    assert full == len(roi_tiles(fc(feature(parts, max_res=grid.resolution(8), kind="MultiPolygon"))))
    assert 100 < count_tiles(roi, limit=100) < full


def test_a_long_column_comes_in_runs_of_rows():
    # One column of zoom 20 holds 1,048,576 tiles; before runs, they were all built at once
    # (about 500 MB and 11 s in a web request; zoom 24 would take gigabytes).
    res = grid.resolution(20)
    strip = parse_roi(fc(feature([[[-180, -90], [-179.9999, -90], [-179.9999, 90], [-180, 90], [-180, -90]]], max_res=res, minResolutionDeg=res)))
    first = list(itertools.islice(iter_tiles(strip), 3))
    assert [(z, c, rows[0], rows.size) for z, c, rows in first] == [(20, 0, n * roi_module.ROWS_AT_ONCE, roi_module.ROWS_AT_ONCE) for n in range(3)]
    small = grid.resolution(13)  # 8,192 rows a column: two runs, every row once, in order
    rows = [r for _, c, r in roi_tiles(fc(feature([[[-180, -90], [-179.99, -90], [-179.99, 90], [-180, 90], [-180, -90]]], max_res=small, minResolutionDeg=small))) if c == 0]
    assert rows == list(range(2**13))


def test_bounds_alone_refuse_a_strip_across_the_world_and_never_overstate():
    res = grid.resolution(24)  # 33 million one-tile columns: refused from the bounds, no tile tested
    strip = parse_roi(fc(feature([[[-180, 0], [180, 0], [180, 1e-5], [-180, 1e-5], [-180, 0]]], max_res=res, minResolutionDeg=res)))
    assert roi_module.least_tiles(strip) == 2**25 and count_tiles(strip, limit=2_000_000) == 2**25
    for roi in (  # a lower bound: a diagonal, a ring with a hole, two parts, the antimeridian
        fc(feature([[[0, 0], [40, 30], [40, 31], [0, 1], [0, 0]]], max_res=grid.resolution(7))),
        fc(feature([[[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]], [[-45, -45], [45, -45], [45, 45], [-45, 45], [-45, -45]]], max_res=grid.resolution(3))),
        fc(feature([[[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]], [[[50, 50], [60, 50], [60, 60], [50, 60], [50, 50]]]], max_res=grid.resolution(6), kind="MultiPolygon")),
        fc(feature([[[170, 10], [-170, 10], [-170, 20], [170, 20], [170, 10]]], max_res=grid.resolution(6))),
    ):
        parsed = parse_roi(roi)
        assert 0 < roi_module.least_tiles(parsed) <= count_tiles(parsed) == len(roi_tiles(roi))
