"""`exporter search ...`: keep the public search index current, and query it."""

from __future__ import annotations

import json

import click


def _ctx():
    from exporter.context import get_context

    return get_context()


@click.group("search")
def search() -> None:
    """The public search index (also what OAI-PMH at /oai serves)."""


@search.command("refresh")
@click.option("--reconcile", is_flag=True, help="Also compare every raid's change time with the index and fix what differs.")
def refresh_cmd(reconcile: bool) -> None:
    """Index the raids changed since the last refresh (what celery beat runs every SEARCH_REFRESH_INTERVAL)."""
    from exporter.discovery.index import refresh

    click.echo(json.dumps(refresh(_ctx(), reconcile=reconcile)))


@search.command("rebuild")
def rebuild_cmd() -> None:
    """Index every raid again (unchanged public views keep their OAI-PMH datestamps)."""
    from exporter.discovery.index import rebuild

    click.echo(json.dumps(rebuild(_ctx())))


@search.command("query")
@click.argument("q", required=False, default="")
@click.option("--agency", help="Registration agency (ROR or short id).")
@click.option("--service-point", type=int)
@click.option("--access-type", type=click.Choice(["open", "embargoed"]))
@click.option("--from", "start_from", help="Start date on or after (YYYY-MM-DD).")
@click.option("--until", "start_until", help="Start date on or before (YYYY-MM-DD).")
@click.option("--sort", type=click.Choice(["relevance", "date"]), default="relevance", show_default=True)
@click.option("--page", type=click.IntRange(1), default=1)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (as the API would).")
def query_cmd(q: str, agency, service_point, access_type, start_from, start_until, sort: str, page: int, as_json: bool) -> None:
    """Search the index for Q (words, "phrases", OR, -excluded)."""
    from exporter.discovery.search import search as run

    results = run(_ctx(), q, agency=agency, service_point=service_point, access_type=access_type, start_from=start_from, start_until=start_until, sort=sort, page=page)
    if as_json:
        click.echo(json.dumps(results.to_dict(), indent=2))
        return
    click.echo(f"{results.total:,}{'' if results.total_exact else '+'} results")
    for hit in results.hits:
        click.echo(f"{hit.handle}  {hit.title or '(embargoed)'}")
