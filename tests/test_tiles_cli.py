"""`exporter layers add|list` and `exporter export tiles --wait`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli.main import main
from exporter import jobs
from exporter.tiles import grid
from tests.tiles_fixtures import box_roi, roi_tiles, validate_gpkg, write_tiles

ROI = box_roi(34.8, 31.8, 35.2, 32.1, grid.resolution(10), grid.resolution(7))


@pytest.fixture
def cli(ctx, tmp_path, monkeypatch):
    monkeypatch.setenv("EXPORTER_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("EXPORTER_SECRET_KEY", "test-secret-key-0123456789")
    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args), catch_exceptions=False)


def test_layers_add_list_and_a_tiles_export_run_here(ctx, cli, tmp_path):
    write_tiles(tmp_path / "tiles", roi_tiles(ROI))
    added = cli("layers", "add", "demo", "--folder", str(tmp_path / "tiles"), "--max-zoom", "12")
    assert added.exit_code == 0, added.output
    assert json.loads(added.output)["maxZoom"] == 12
    assert cli("layers", "add", "web", "--url-template", "https://tiles.example.org/{z}/{x}/{-y}.png", "--format", "jpeg").exit_code == 0
    listed = cli("layers", "list")
    assert "demo" in listed.output and "folder" in listed.output and "web" in listed.output and "~15000 B/tile" in listed.output
    assert json.loads(cli("layers", "list", "--json").output)[1]["tms"] is True

    roi_file = tmp_path / "roi.geojson"
    roi_file.write_text(json.dumps(ROI))
    done = cli("export", "tiles", "--layer", "demo", "--roi", str(roi_file), "--wait")
    assert done.exit_code == 0, done.output
    assert f"{len(roi_tiles(ROI))} tiles written, 0 missing" in done.output
    (job,) = jobs.list_jobs(ctx, kind="tiles")
    assert validate_gpkg(ctx.storage.path(next(a.key for a in job.artifacts if a.name == "data"))) == []
    again = cli("export", "tiles", "--layer", "demo", "--roi", str(roi_file), "--wait")
    assert f"{job.id} cached" in again.output


def test_errors_are_one_line_naming_the_problem(ctx, cli, tmp_path):
    roi_file = tmp_path / "roi.geojson"
    roi_file.write_text(json.dumps(ROI))
    missing = cli("export", "tiles", "--layer", "nope", "--roi", str(roi_file))
    assert missing.exit_code != 0 and "no tile layer 'nope'" in missing.output
    bad = cli("layers", "add", "x", "--url-template", "https://example.org/tiles.png")
    assert bad.exit_code != 0 and "{z}, {x} and {y}" in bad.output
    for name, content in (("binary.geojson", b"\xac\xed\x00\x05"), ("deep.geojson", b"[" * 100_000 + b"]" * 100_000)):
        (tmp_path / name).write_bytes(content)
        out = cli("export", "tiles", "--layer", "nope", "--roi", str(tmp_path / name))
        assert out.exit_code == 1 and out.output.strip().count("\n") == 0 and "is not a GeoJSON file" in out.output, out.output
