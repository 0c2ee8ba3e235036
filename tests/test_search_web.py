"""The public search page, the `exporter search` commands and the beat task, on both backends."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cli.main import main
from exporter.discovery import index
from tests.raids_helpers import OTHER_AGENCY, OTHER_SP, future, handle, record, save
from web import create_app


def populate(ctx) -> None:
    save(
        ctx,
        record(1, title="Coastal erosion survey"),
        record(2, title="Coastal wetlands", agency=OTHER_AGENCY, sp=OTHER_SP),
        record(3, access="embargoed", expiry=future(), title="Coastal secret plan", secret="s3cr3t"),
    )
    index.refresh(ctx)


def test_the_search_page_needs_no_login_and_shows_public_results_with_facets(ctx):
    populate(ctx)
    client = create_app(ctx).test_client()
    page = client.get("/search?q=coastal")
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert f'href="{handle(1)}"' in body and "Coastal erosion survey" in body and "Coastal wetlands" in body
    assert "secret" not in body.lower()
    assert "2 results" in body and 'data-facet="agency"' in body
    narrowed = client.get("/search?q=coastal&agency=02stey378").get_data(as_text=True)
    assert "1 result" in narrowed and "Coastal erosion survey" not in narrowed
    closed = client.get("/search", query_string={"q": handle(3)}).get_data(as_text=True)
    assert handle(3) in closed and "embargoed" in closed and "secret" not in closed.lower()
    bad = client.get("/search?q=coastal%20OR")
    assert bad.status_code == 400 and "OR needs a term" in bad.get_data(as_text=True)
    assert client.get("/search").status_code == 200


def test_the_cli_refreshes_rebuilds_and_queries(ctx):
    save(ctx, record(1, title="Glacier mass balance"))
    runner = CliRunner()
    out = runner.invoke(main, ["search", "refresh"], catch_exceptions=False)
    assert out.exit_code == 0 and json.loads(out.output)["mode"] == "incremental"
    out = runner.invoke(main, ["search", "rebuild"], catch_exceptions=False)
    assert out.exit_code == 0 and json.loads(out.output)["mode"] == "rebuild"
    out = runner.invoke(main, ["search", "query", "glacier"], catch_exceptions=False)
    assert out.exit_code == 0 and "1 results" in out.output and "Glacier mass balance" in out.output
    out = runner.invoke(main, ["search", "query", "--", "-glacier"])
    assert out.exit_code != 0 and "only excludes words" in out.output
    hits = json.loads(runner.invoke(main, ["search", "query", "glacier", "--json"]).output)["hits"]
    assert hits[0]["handle"] == handle(1) and hits[0]["publicInFull"] is True


def test_the_beat_task_refreshes_and_reconciles_when_due(ctx):
    import workers.tasks as tasks

    save(ctx, record(1, title="Beat driven"))
    first = tasks.search_refresh()
    assert first["mode"] == "reconcile"  # never reconciled yet
    assert tasks.search_refresh()["mode"] == "incremental"
