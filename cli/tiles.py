"""`exporter layers add|list` and `exporter export tiles`."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import click

from cli.progress import progressbar

from .raids import export


def _ctx():
    from exporter.context import get_context

    return get_context()


@click.group("layers")
def layers() -> None:
    """Tile layers (WorldCRS84Quad, EPSG:4326) that tiles exports read from."""


@layers.command("add")
@click.argument("name")
@click.option("--url-template", help="XYZ URL with {z}, {x}, {y} (row 0 at the top) or {-y} (TMS, row 0 at the bottom).")
@click.option("--folder", type=click.Path(file_okay=False), help="Local folder of {z}/{x}/{y}.png|jpg.")
@click.option("--max-zoom", default=18, show_default=True, type=click.IntRange(0, 24), help="Finest zoom level the layer has.")
@click.option("--format", "fmt", type=click.Choice(["png", "jpeg"]), default="png", show_default=True)
@click.option("--tms", is_flag=True, help="Rows count from the bottom (TMS) in the folder or the {y} of the template.")
@click.option("--record-id", help="Catalog record id clients send as MapColonies' dbId (default: a new UUID).")
def layers_add(name: str, url_template: str | None, folder: str | None, max_zoom: int, fmt: str, tms: bool, record_id: str | None) -> None:
    """Register (or update) tile layer NAME."""
    from exporter.tiles.layers import add_layer

    layer = add_layer(_ctx(), name, url_template=url_template, folder=folder, max_zoom=max_zoom, fmt=fmt, tms=tms, record_id=record_id)
    click.echo(json.dumps(layer.to_dict(), indent=2))


@layers.command("list")
@click.option("--json", "as_json", is_flag=True)
def layers_list(as_json: bool) -> None:
    """List the registered tile layers."""
    from exporter.tiles.layers import list_layers

    rows = list_layers(_ctx())
    if as_json:
        click.echo(json.dumps([layer.to_dict() for layer in rows], indent=2))
        return
    if not rows:
        click.echo("no tile layers")
    for layer in rows:
        click.echo(f"{layer.name:<20} {layer.kind:<6} z0-{layer.max_zoom:<3} {layer.format:<5} ~{layer.average_tile_bytes} B/tile  {layer.url_template or layer.folder}")


@export.command("tiles")
@click.option("--layer", required=True, help="Tile layer name (see `exporter layers list`).")
@click.option("--roi", "roi_file", required=True, type=click.Path(dir_okay=False, exists=True), help="GeoJSON FeatureCollection; each feature's maxResolutionDeg picks the finest zoom.")
@click.option("--description")
@click.option("--wait", is_flag=True, help="Run the export in this process (with a progress bar) instead of enqueueing it.")
def export_tiles(layer: str, roi_file: str, description: str | None, wait: bool) -> None:
    """GeoPackage of every tile of LAYER inside the region of interest."""
    from exporter import jobs, runner, submissions
    from exporter.errors import InvalidRequest
    from exporter.tiles.requests import normalize_tiles_request

    try:
        roi = json.loads(Path(roi_file).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"{roi_file} is not a GeoJSON file: {exc}", field="roi") from None
    except RecursionError:
        raise InvalidRequest(f"{roi_file} is not a GeoJSON file: nested too deeply to be read", field="roi") from None
    ctx = _ctx()
    params = normalize_tiles_request({"layer": layer, "roi": roi}, ctx)
    if not wait:
        from workers.app import install_dispatcher

        install_dispatcher()
    else:
        ctx.enqueue = lambda task, job_id, queue: None  # this process runs it
    sub = submissions.request_job(ctx, "tiles", params, requested_by="cli", description=description)
    job = sub.job
    if sub.outcome != "created" or not wait:
        click.echo(f"{job.id} {sub.outcome} ({params['tileCount']} tiles, zoom {params['minZoom']}-{params['maxZoom']}); follow it with: exporter jobs show {job.id}")
        if job.status != "succeeded":
            return
    else:
        worker = threading.Thread(target=runner.run_job, args=(ctx, job.id), daemon=True)
        worker.start()
        with progressbar(length=params["tileCount"], label=f"tiles {job.id[:8]}", show_pos=True) as bar:
            while worker.is_alive():
                worker.join(0.25)
                bar.update(jobs.get(ctx, job.id).progress_done - bar.pos)
    job = jobs.get(ctx, job.id)
    if job.status != "succeeded":
        click.echo(f"{job.id} {job.status}: {job.error}", err=True)
        sys.exit(1)
    result = job.result or {}
    click.echo(f"{job.id} succeeded: {result.get('written')} tiles written, {result.get('missing')} missing")
    for art in job.artifacts:
        click.echo(f"  {art.name}: {art.key} ({art.size} bytes, sha256 {art.sha256})")
