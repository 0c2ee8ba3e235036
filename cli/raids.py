"""`exporter raids ...` (import, generate) and `exporter export ...` (public, private)."""

from __future__ import annotations

import json
import sys
import threading

import click

from cli.progress import progressbar


def _ctx():
    from exporter.context import get_context

    return get_context()


@click.group("raids")
def raids() -> None:
    """The RAiD registry: import and generate raids."""


@raids.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Abort at the first bad record and write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def import_cmd(file: str, strict: bool, as_json: bool) -> None:
    """Import FILE (JSON Lines, or a JSON array, of RAiD API records), upserting by handle."""
    from exporter.raids.importer import import_file

    report = import_file(_ctx(), file, strict=strict)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line, message in report.errors:
            click.echo(f"{file}:{line}: {message}", err=True)
        if report.failed > len(report.errors):
            click.echo(f"... and {report.failed - len(report.errors)} more errors", err=True)
        click.echo(f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged, {report.failed} rejected")
    if report.failed:
        sys.exit(1)


@raids.command("generate")
@click.argument("n", type=click.IntRange(1, 100_000_000))
@click.option("--agency", default="https://ror.org/038sjwq14", show_default=True, help="Registration agency (ROR); created if missing.")
@click.option("--service-point", "service_points", type=click.IntRange(1), multiple=True, help="Service point id (repeatable); created if missing. Default 20000000.")
@click.option("--seed", type=int, help="Random seed, for repeatable data.")
def generate_cmd(n: int, agency: str, service_points: tuple[int, ...], seed: int | None) -> None:
    """Insert N realistic synthetic raids (mixed access types, contributors, organisations)."""
    from exporter.raids.generator import generate
    from exporter.raids.record import ror_id

    ror_id(agency)  # a bad ROR is one line, before a progress bar is drawn
    with progressbar(length=n, label="generating raids") as bar:
        last = 0

        def advance(done: int) -> None:
            nonlocal last
            bar.update(done - last)
            last = done

        count = generate(_ctx(), n, agency=agency, service_points=list(service_points) or None, seed=seed, on_progress=advance)
    click.echo(f"{count} raids generated for agency {agency}, service point(s) {', '.join(map(str, service_points or (20000000,)))}")


@click.group("export")
def export() -> None:
    """Public (per agency) and private (per service point) exports of raids."""


def _run(kind: str, params: dict, enqueue: bool, links: bool) -> None:
    from exporter import jobs, runner
    from exporter.raids.export import download_links, request_export

    ctx = _ctx()
    if enqueue:
        from workers.app import install_dispatcher

        install_dispatcher()
        job = request_export(ctx, kind, params, requested_by="cli")
        click.echo(f"{job.id} enqueued ({kind}); follow it with: exporter jobs show {job.id}")
        return
    job = request_export(ctx, kind, params, requested_by="cli", enqueue=False)
    outcome: dict = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("status", runner.run_job(ctx, job.id)), daemon=True)
    worker.start()
    with progressbar(length=1, label=f"{kind} {job.id[:8]}", show_pos=True) as bar:
        while worker.is_alive():
            worker.join(0.25)
            current = jobs.get(ctx, job.id)
            if current.progress_total:
                bar.length = current.progress_total
                bar.update(current.progress_done - bar.pos)
        current = jobs.get(ctx, job.id)
        if current.status == "succeeded" and bar.length:
            bar.update(bar.length - bar.pos)
    if current.status != "succeeded":
        click.echo(f"{job.id} {current.status}: {current.error or outcome.get('status')}", err=True)
        sys.exit(1)
    result = current.result or {}
    counts = result.get("counts", {})
    click.echo(f"{job.id} succeeded: {result.get('mode')} export, {counts.get('records', 0)} raids, {counts.get('tombstones', 0)} tombstones")
    for art in current.artifacts:
        if art.name in ("archive", "manifest"):
            click.echo(f"  {art.name}: {art.key} ({art.size} bytes, sha256 {art.sha256})")
    if links:
        ttl = ctx.settings.download_url_ttl
        for name, url in download_links(ctx, job.id).items():
            if name in ("archive", "manifest"):
                click.echo(f"  {name} link (expires in {ttl} s): {url}")


@export.command("public")
@click.option("--agency", required=True, help="Registration agency: its ROR or the ROR's short id.")
@click.option("--incremental", is_flag=True, help="Only raids changed since the last successful public export of this agency.")
@click.option("--format", "fmt", type=click.Choice(["zip", "tar.gz"]), default="zip", show_default=True)
@click.option("--no-sitemaps", is_flag=True, help="Skip the sitemaps and HTML index.")
@click.option("--enqueue", is_flag=True, help="Submit to the workers instead of running here.")
def export_public(agency: str, incremental: bool, fmt: str, no_sitemaps: bool, enqueue: bool) -> None:
    """Export one agency's raids: open ones in full, closed ones reduced to their public fields."""
    params = {"agency": agency, "mode": "incremental" if incremental else "full", "format": fmt, "sitemaps": not no_sitemaps}
    _run("export_public", params, enqueue, links=False)


@export.command("private")
@click.option("--service-point", "service_point", required=True, type=click.IntRange(1), help="Service point id, e.g. 20000000.")
@click.option("--incremental", is_flag=True, help="Only raids changed since the last successful private export of this service point.")
@click.option("--format", "fmt", type=click.Choice(["zip", "tar.gz"]), default="zip", show_default=True)
@click.option("--enqueue", is_flag=True, help="Submit to the workers instead of running here.")
def export_private(service_point: int, incremental: bool, fmt: str, enqueue: bool) -> None:
    """Export every raid of one service point in full; prints expiring download links."""
    params = {"service_point": service_point, "mode": "incremental" if incremental else "full", "format": fmt}
    _run("export_private", params, enqueue, links=True)


