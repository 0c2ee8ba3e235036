"""`exporter archive URL`, `exporter portals add|list|sweep`, `exporter archives prune|report|show`."""

from __future__ import annotations

import json
import sys

import click


def _ctx():
    from exporter.context import get_context

    return get_context()


def _print_record(record: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    res, arch = record["resource"], record["archival"] or {}
    click.echo(f"resource   {res['id']}  {res['url']}")
    click.echo(f"status     {arch.get('status_id')} {arch.get('status')}" + (f": {arch['reason']}" if arch.get("reason") else ""))
    for name in ("url_redirected_to", "cache_key", "size", "mimetype", "md5", "sha256", "etag", "last_modified", "failure_count", "first_failure", "last_success", "next_check_at"):
        if arch.get(name) not in (None, ""):
            click.echo(f"{name:<10} {arch[name]}" if len(name) <= 10 else f"{name} {arch[name]}")


@click.command("archive")
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print the archival record as JSON.")
@click.option("--link-check-only", is_flag=True, help="Check and record; store nothing.")
@click.option("--force", is_flag=True, help="Ask the server even if the stored copy is still fresh.")
def archive(url: str, as_json: bool, link_check_only: bool, force: bool) -> None:
    """Archive one URL in this process and print its archival record."""
    from exporter.archiver.archive import archive_resource
    from exporter.archiver.models import OK_STATUSES
    from exporter.archiver.resources import upsert_url, validate_url

    ctx = _ctx()
    rid = upsert_url(ctx, validate_url(url), link_check_only=link_check_only)
    record = archive_resource(ctx, rid, force=force)
    _print_record(record, as_json)
    status = (record["archival"] or {}).get("status_id")
    if status not in OK_STATUSES and status != 21:
        sys.exit(1)


@click.group("portals")
def portals() -> None:
    """CKAN portals whose resources are archived."""


@portals.command("add")
@click.argument("name")
@click.argument("base_url")
@click.option("--token", envvar="EXPORTER_PORTAL_TOKEN", help="CKAN API token (sees private datasets; needed for write-back).")
@click.option("--write-back", is_flag=True, help="Write cache_url, hash, size... back to the portal (resource_patch).")
@click.option("--link-check-only", is_flag=True, help="Check links and record outcomes; store nothing.")
def portals_add(name: str, base_url: str, token: str | None, write_back: bool, link_check_only: bool) -> None:
    """Register (or update) portal NAME at BASE_URL."""
    from exporter.archiver.portals import add_portal

    portal = add_portal(_ctx(), name, base_url, token, write_back, link_check_only)
    click.echo(json.dumps(portal.to_dict(), indent=2))


@portals.command("list")
@click.option("--json", "as_json", is_flag=True)
def portals_list(as_json: bool) -> None:
    """List registered portals."""
    from exporter.archiver.portals import list_portals

    rows = list_portals(_ctx())
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in rows], indent=2))
        return
    if not rows:
        click.echo("no portals")
    for p in rows:
        mode = "link-check" if p.link_check_only else "archive"
        click.echo(f"{p.name:<20} {p.base_url:<40} {mode:<10} token={'yes' if p.api_token else 'no'} write-back={'yes' if p.write_back else 'no'} last swept {p.last_swept_at or 'never'}")


@portals.command("sweep")
@click.argument("name")
@click.option("--all", "recheck_all", is_flag=True, help="Check every resource, not only those whose next check time came.")
@click.option("--wait/--no-wait", default=False, help="Run the sweep and its archive tasks in this process instead of enqueueing.")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1, 64), help="Threads archiving at once with --wait.")
def portals_sweep(name: str, recheck_all: bool, wait: bool, workers: int) -> None:
    """Sweep portal NAME: enumerate its resources and archive those due."""
    from exporter import jobs, runner
    from exporter.archiver.portals import get_portal
    from exporter.archiver.sweep import inline_dispatcher

    ctx = _ctx()
    portal = get_portal(ctx, name)
    params = {"portal": portal.name, "recheck": "all" if recheck_all else "due"}
    if not wait:
        from workers.app import install_dispatcher

        install_dispatcher()
        job = jobs.submit(ctx, "sweep_portal", params, requested_by="cli")
        click.echo(json.dumps(jobs.get(ctx, job.id).to_dict(), indent=2))
        return
    enqueue, shutdown = inline_dispatcher(ctx, workers=workers, fallback=ctx.enqueue)
    ctx.enqueue = enqueue
    try:
        job = jobs.submit(ctx, "sweep_portal", params, requested_by="cli", enqueue=False)
        runner.run_job(ctx, job.id)
    finally:
        shutdown()
    job = jobs.get(ctx, job.id)
    click.echo(json.dumps(job.to_dict(), indent=2))
    if job.status == "failed":
        sys.exit(1)


@click.group("archives")
def archives() -> None:
    """Archived resources: records, upkeep, reports."""


@archives.command("show")
@click.argument("resource_id")
def archives_show(resource_id: str) -> None:
    """Print a resource's archival record and stored versions as JSON."""
    from exporter.archiver.archive import archival_record

    click.echo(json.dumps(archival_record(_ctx(), resource_id), indent=2))


@archives.command("prune")
@click.option("--keep", type=click.IntRange(1, 1000), help="Versions kept per resource (default: EXPORTER_ARCHIVER_KEEP_VERSIONS).")
@click.option("--dry-run", is_flag=True)
def archives_prune(keep: int | None, dry_run: bool) -> None:
    """Delete copies of resources gone from their portal and versions beyond the newest K."""
    from exporter.archiver.prune import prune

    click.echo(json.dumps(prune(_ctx(), keep, dry_run), indent=2))


@archives.command("report")
@click.option("--organization", "--org", help="Only this organisation.")
@click.option("--portal", help="Only this portal.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV (one line per broken resource) instead of JSON.")
def archives_report(organization: str | None, portal: str | None, as_csv: bool) -> None:
    """The broken-links report per organisation."""
    from exporter.archiver.reports import broken_links, broken_links_csv

    report = broken_links(_ctx(), organization, portal)
    click.echo(broken_links_csv(report) if as_csv else json.dumps(report, indent=2), nl=not as_csv)
