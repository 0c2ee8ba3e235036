# ruff: noqa: F811 - fixtures come from tests.archiver_fixtures
"""Portal sweeps against a fake CKAN portal, archive_urls jobs, pruning, reports and the CLI."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from exporter import jobs, parts, runner
from exporter.archiver.ckan import CKANClient, CKANError
from exporter.archiver.models import Archival, ArchiveVersion, Resource
from exporter.archiver.portals import add_portal
from exporter.archiver.prune import prune
from exporter.archiver.reports import CSV_COLUMNS, broken_links, broken_links_csv
from exporter.archiver.sweep import inline_dispatcher, resweep
from exporter.errors import InvalidRequest
from exporter.netsafety import safe_session
from exporter.parts import PART_TASK
from tests.archiver_fixtures import LOCAL, actx, archive_url, nginx, server, sha256, unique  # noqa: F401
from tests.http_servers import FakeCKAN, ckan_package

TOKEN = "secret-api-token"


@pytest.fixture
def portal_site(nginx, server):
    """25 public datasets in 3 organisations plus one private; files on nginx, one broken link."""
    packages = []
    for i in range(25):
        name = f"ds-{i:02d}"
        (nginx.root / f"{name}.csv").write_bytes(f"dataset,{i}\n".encode())
        resources = [(f"res-{i:02d}-a", f"{nginx.url}/{name}.csv")]
        if i == 3:
            resources.append(("res-03-broken", f"{server.url}/status/404"))
        packages.append(ckan_package(name, ["water", "roads", "health"][i % 3], resources))
    (nginx.root / "secret.csv").write_bytes(b"private,1\n")
    packages.append(ckan_package("hidden", "health", [("res-private", f"{nginx.url}/secret.csv")], private=True))
    site = FakeCKAN(packages, token=TOKEN, max_rows=10).start()
    yield site
    site.stop()


def run_sweep(ctx, portal: str, recheck: str = "due"):
    enqueue, shutdown = inline_dispatcher(ctx, workers=2)
    ctx.enqueue = enqueue
    try:
        job = jobs.submit(ctx, "sweep_portal", {"portal": portal, "recheck": recheck}, enqueue=False)
        assert runner.run_job(ctx, job.id) in ("succeeded", "fanned_out")
    finally:
        shutdown()
    job = jobs.get(ctx, job.id)
    assert job.status == "succeeded", job.error
    return job


def test_ckan_client_pages_with_a_stable_sort(portal_site):
    client = CKANClient(portal_site.url, safe_session(LOCAL), token=TOKEN)
    names = [p["name"] for p in client.iter_packages(rows=7)]
    assert len(names) == 26 and len(set(names)) == 26 and "hidden" in names
    searches = [q for path, q in portal_site.calls if path.endswith("package_search")]
    assert ["start" in q for q in searches] == [False] * 5  # keyset pages: after the last id seen, never an offset
    # ... until an empty page: a count lower than the truth cannot end the listing early
    assert [q.get("fq") for q in searches] == [None, '+id:{"pkg-ds-06" TO *]', '+id:{"pkg-ds-13" TO *]', '+id:{"pkg-ds-20" TO *]', '+id:{"pkg-hidden" TO *]']
    assert all(q["sort"] == "id asc" for q in searches)
    public = [p["name"] for p in CKANClient(portal_site.url, safe_session(LOCAL)).iter_packages()]
    assert len(public) == 25 and "hidden" not in public
    with pytest.raises(CKANError, match="Not found"):
        CKANClient(portal_site.url, safe_session(LOCAL)).action("no_such_action")


def test_sweep_archives_every_resource_then_marks_gone_and_prunes(actx, portal_site):
    add_portal(actx, "city", portal_site.url, api_token=TOKEN)
    job = run_sweep(actx, "city")
    r = job.result
    assert (r["datasets"], r["resources"], r["new"], r["gone"], r["due"], r["checked"]) == (26, 27, 27, 0, 27, 27)
    assert r["statuses"] == {"Archived successfully": 26, "Download error": 1}
    assert (job.progress_done, job.progress_total) == (27, 27)
    with actx.db.session() as s:  # the due ids are in the parts only, not copied into the fan-out state
        fanout = s.get(parts.JobFanout, job.id)
        assert fanout.state["portal"] == "city" and not any(isinstance(v, list) for v in fanout.state.values())
        assert sum(len(items) for items in parts.part_items(actx, job.id)) == 27
    with actx.db.session() as s:
        res = s.scalars(select(Resource).where(Resource.external_id == "res-04-a")).one()
        assert (res.organization, res.package_name, res.format) == ("roads", "ds-04", "CSV")
        arch = s.get(Archival, res.id)
        assert arch.sha256 == sha256(b"dataset,4\n") and arch.cache_key.startswith("archive/") and res.id in arch.cache_key

    again = run_sweep(actx, "city")  # nothing is due yet
    assert again.result["due"] == 0 and again.result["new"] == 0

    portal_site.packages = [p for p in portal_site.packages if p["name"] != "ds-07"]
    third = run_sweep(actx, "city", recheck="all")
    assert third.result["gone"] == 1 and third.result["due"] == 26
    assert third.result["statuses"]["Content has not changed"] == 25  # nginx answered 304
    assert third.result["not_modified"] == 25  # settled by a conditional request each: no body fetched
    with actx.db.session() as s:
        gone = s.scalars(select(Resource).where(Resource.external_id == "res-07-a")).one()
        assert gone.gone_at is not None
        gone_key = s.get(Archival, gone.id).cache_key
    assert actx.storage.stat(gone_key) is not None
    report = prune(actx, keep=1)
    assert report["gone_resources"] == 1 and gone_key in report["keys"]
    assert actx.storage.stat(gone_key) is None
    with actx.db.session() as s:
        assert s.get(Archival, gone.id).cache_key is None
        assert s.scalars(select(ArchiveVersion).where(ArchiveVersion.resource_id == gone.id)).one().deleted_at is not None


def test_prune_keeps_the_newest_versions(actx, server):
    url = f"{server.url}/versioned?k={unique('a.b')}"
    keys = []
    for n in range(4):
        server.versioned_body = f"version {n}\n".encode()
        keys.append(archive_url(actx, url)["archival"]["cache_key"])
    assert len(set(keys)) == 4
    dry = prune(actx, keep=2, dry_run=True)
    assert dry["versions_deleted"] == 2 and all(actx.storage.stat(k) for k in keys)
    done = prune(actx, keep=2)
    assert sorted(done["keys"]) == sorted(keys[:2])
    assert [actx.storage.stat(k) is not None for k in keys] == [False, False, True, True]


def test_write_back_patches_the_portal(actx, portal_site):
    portal_site.packages = portal_site.packages[:2]
    add_portal(actx, "wb", portal_site.url, api_token=TOKEN, write_back=True)
    run_sweep(actx, "wb")
    patched = {p["id"]: p for p in portal_site.patches}
    assert set(patched) == {"res-00-a", "res-01-a"}
    p = patched["res-01-a"]
    assert p["hash"] == sha256(b"dataset,1\n") and p["size"] == len(b"dataset,1\n") and p["mimetype"] == "text/csv"
    assert p["cache_url"].endswith("/download") and p["cache_last_updated"]
    assert portal_site.packages[1]["resources"][0]["hash"] == p["hash"]


def test_write_back_needs_a_token(actx):
    with pytest.raises(InvalidRequest, match="token"):
        add_portal(actx, "nope", "http://127.0.0.1:1", write_back=True)


def test_link_check_only_portal_stores_nothing(actx, portal_site):
    portal_site.packages = portal_site.packages[:3]
    add_portal(actx, "links", portal_site.url, link_check_only=True)
    job = run_sweep(actx, "links")
    assert job.result["statuses"] == {"Archived successfully": 3}
    assert list(actx.storage.list("archive/")) == []


def test_a_sweep_fans_out_parts_and_returns_without_waiting(actx, portal_site):
    """The sweep's run returns at once with its parts queued; the last part to run finishes it."""
    actx.settings = actx.settings.replace(archiver_batch_size=4)
    add_portal(actx, "bounded", portal_site.url)
    sent: list[tuple[str, str, str]] = []
    actx.enqueue = lambda task, arg, q: sent.append((task, arg, q))
    job = jobs.submit(actx, "sweep_portal", {"portal": "bounded"}, enqueue=False)
    assert runner.run_job(actx, job.id) == "fanned_out"
    assert jobs.get(actx, job.id).status == "running"
    assert {(task, q) for task, _, q in sent} == {(PART_TASK, "archive")}
    assert len(sent) == 7  # 26 public resources in parts of 4
    outcomes = [parts.run_part(actx, int(arg)) for _, arg, _ in sent]
    assert outcomes == ["done"] * 7
    assert parts.run_part(actx, int(sent[0][1])) == "skipped"  # a duplicate message is a no-op
    job = jobs.get(actx, job.id)
    assert job.status == "succeeded" and job.result["checked"] == 26
    assert (job.progress_done, job.progress_total) == (26, 26)


def test_archive_urls_job(actx, server, nginx):
    urls = [f"{server.url}/data.csv?u=1", f"{server.url}/status/404", f"{nginx.url}/cached/fresh.csv"]
    enqueue, shutdown = inline_dispatcher(actx)
    actx.enqueue = enqueue
    job = jobs.submit(actx, "archive_urls", {"urls": urls}, enqueue=False)
    assert runner.run_job(actx, job.id) == "fanned_out"  # its one part ran inline and finished it
    job = jobs.get(actx, job.id)
    assert (job.progress_done, job.progress_total) == (3, 3)
    assert [r["status_id"] for r in job.result["results"]] == [0, 12, 0]
    assert job.result["results"][0]["sha256"] == sha256(b"a,b\n1,2\n")
    with pytest.raises(InvalidRequest) as err:
        jobs.submit(actx, "archive_urls", {"urls": ["ftp://example.com/x"]}, enqueue=False)
    assert err.value.field == "urls[0]"
    with pytest.raises(InvalidRequest):
        jobs.submit(actx, "sweep_portal", {"portal": "x", "recheck": "sometimes"}, enqueue=False)


def test_archive_urls_again_sends_conditional_requests_in_the_batch(actx, nginx):
    """The same URLs asked again: the part's batch sends If-None-Match/If-Modified-Since, and nginx's
    304s settle them (status 1) with nothing downloaded, as a sweep's recheck does."""
    names = [unique(f"again{i}.csv") for i in range(3)]
    for i, name in enumerate(names):
        (nginx.root / name).write_bytes(f"id\n{i}\n".encode())
    urls = [f"{nginx.url}/{name}" for name in names]
    enqueue, shutdown = inline_dispatcher(actx)
    actx.enqueue = enqueue
    results = []
    for _ in range(2):
        job = jobs.submit(actx, "archive_urls", {"urls": urls}, enqueue=False)
        assert runner.run_job(actx, job.id) == "fanned_out"
        results.append(jobs.get(actx, job.id).result["results"])
    assert [r["status_id"] for r in results[0]] == [0, 0, 0] and [r["status_id"] for r in results[1]] == [1, 1, 1]
    assert [r["cache_key"] for r in results[1]] == [r["cache_key"] for r in results[0]]
    for name in names:
        assert [line.split('"')[2].split()[0] for line in nginx.access_log() if f"/{name} " in line] == ["200", "304"]


def test_broken_links_report(actx, portal_site):
    add_portal(actx, "rep", portal_site.url, api_token=TOKEN)
    run_sweep(actx, "rep")
    report = broken_links(actx)
    assert report["totals"] == {"resources": 27, "checked": 27, "broken": 1, "unknown": 0}
    water = next(o for o in report["organizations"] if o["organization"] == "water")
    assert (water["resources"], water["broken"]) == (10, 1) and water["rows"][0]["url"].endswith("/status/404")
    row = water["rows"][0]
    assert row["failure_count"] == 1 and row["first_failure"] and row["last_success"] is None and row["status_id"] == 12
    assert broken_links(actx, organization="roads")["totals"] == {"resources": 8, "checked": 8, "broken": 0, "unknown": 0}
    lines = list(csv.DictReader(io.StringIO(broken_links_csv(report))))
    assert len(lines) == 1 and list(lines[0]) == CSV_COLUMNS and lines[0]["organization"] == "water"


def test_resweep_submits_one_sweep_per_portal(actx, portal_site, server):
    add_portal(actx, "one", portal_site.url)
    add_portal(actx, "two", portal_site.url)
    archive_url(actx, f"{server.url}/status/404?adhoc=1")  # failed: due again at its next check time
    with actx.db.session() as s:
        s.execute(Archival.__table__.update().values(next_check_at=None))
    first = resweep(actx)
    assert len(first["sweeps"]) == 2 and first["adhoc_enqueued"] == 1
    again = resweep(actx)
    assert again["sweeps"] == [] and sorted(again["already_running"]) == ["one", "two"]
    assert [t for t, _, _ in actx.sent].count("exporter.sweep_portal") == 2


def test_cli_archive_and_portals(actx, server, portal_site):
    from cli.main import main

    cli = CliRunner()
    out = cli.invoke(main, ["archive", f"{server.url}/data.csv?cli=1", "--json"])
    assert out.exit_code == 0, out.output
    record = json.loads(out.stdout)
    assert record["archival"]["status_id"] == 0 and record["archival"]["sha256"] == sha256(b"a,b\n1,2\n")
    out = cli.invoke(main, ["archive", f"{server.url}/status/404"])
    assert out.exit_code == 1 and "12 Download error" in out.output
    out = cli.invoke(main, ["archive", "ftp://example.com/x"])
    assert out.exit_code != 0 and "not http or https" in out.output

    portal_site.packages = portal_site.packages[:4]
    assert cli.invoke(main, ["portals", "add", "cli-portal", portal_site.url]).exit_code == 0
    listed = cli.invoke(main, ["portals", "list", "--json"])
    assert [p["name"] for p in json.loads(listed.stdout)] == ["cli-portal"]
    swept = cli.invoke(main, ["portals", "sweep", "cli-portal", "--wait", "--workers", "2"])
    assert swept.exit_code == 0, swept.output
    result = json.loads(swept.stdout)
    assert result["status"] == "succeeded" and result["result"]["checked"] == 5
    report = cli.invoke(main, ["archives", "report", "--csv"])
    assert report.exit_code == 0 and report.stdout.startswith("organization,") and "/status/404" in report.output
    by_portal = cli.invoke(main, ["archives", "report", "--portal", "cli-portal", "--csv"])
    assert by_portal.exit_code == 0 and "ds-03" in by_portal.stdout and "(no organisation)" not in by_portal.stdout  # not the ad-hoc archive
    unknown = cli.invoke(main, ["archives", "report", "--portal", "no-such-portal"])
    assert unknown.exit_code != 0 and "no portal 'no-such-portal'" in unknown.output
