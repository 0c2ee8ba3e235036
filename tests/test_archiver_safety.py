# ruff: noqa: F811 - fixtures come from tests.archiver_fixtures
"""Archived copies are not lost by mistake: keyset enumeration, gone only after complete
sweeps and under a share threshold, a grace period in prune, bounded reads and loops."""

from __future__ import annotations

from datetime import timedelta
from http.server import BaseHTTPRequestHandler

import pytest
from sqlalchemy import select

from exporter import jobs, runner
from exporter.archiver.archive import archive_resource
from exporter.archiver.ckan import CKANClient, CKANError, IncompleteEnumeration, client_for, resource_rows
from exporter.archiver.models import Archival, ArchiveVersion, Resource, resource_id_for
from exporter.archiver.portals import add_portal
from exporter.archiver.prune import prune
from exporter.archiver.reports import broken_links
from exporter.archiver.resources import sweep_gone, upsert_portal_resources, upsert_url
from exporter.archiver.sweep import inline_dispatcher
from exporter.db import utcnow
from exporter.netsafety import safe_session
from tests.api_support import api, fake_exports  # noqa: F401
from tests.archiver_fixtures import LOCAL, actx, nginx, server  # noqa: F401
from tests.http_servers import FakeCKAN, ScenarioServer, _Base, ckan_package

TOKEN = "safety-token"


@pytest.fixture
def site():
    packages = [ckan_package(f"ds-{i:02d}", "org", [(f"r-{i:02d}", f"http://127.0.0.1:9/{i}.csv")]) for i in range(20)]
    srv = FakeCKAN(packages, token=TOKEN, max_rows=5).start()
    yield srv
    srv.stop()


def test_a_dataset_deleted_mid_sweep_makes_no_other_skipped(site):
    names = []
    listing = CKANClient(site.url, safe_session(LOCAL), token=TOKEN).iter_packages(rows=5)
    for pkg in listing:
        names.append(pkg["name"])
        if len(names) == 5:  # the first page is read: the portal deletes one dataset of it
            site.packages = [p for p in site.packages if p["name"] != "ds-01"]
    assert names == [f"ds-{i:02d}" for i in range(20)]  # offset paging would have skipped ds-05


def test_datasets_added_mid_sweep_make_no_other_listed_twice(site):
    """Two datasets appear after the first page: one sorts before what was read (it waits for
    the next sweep), one after (listed now); offset paging would list ds-04 twice."""
    names = []
    for pkg in CKANClient(site.url, safe_session(LOCAL), token=TOKEN).iter_packages(rows=5):
        names.append(pkg["name"])
        if len(names) == 5:
            site.packages = [ckan_package("ds-00a", "org", [("r-00a", "http://127.0.0.1:9/a.csv")]), *site.packages]
            site.packages.append(ckan_package("ds-19a", "org", [("r-19a", "http://127.0.0.1:9/b.csv")]))
    assert names == [f"ds-{i:02d}" for i in range(20)] + ["ds-19a"]


def test_keyset_filter_holds_when_a_plugin_appends_to_fq(site):
    """A search plugin appends " +dataset_type:dataset" to fq: an unmarked range clause would then
    be optional under Lucene's OR (every page the first again); the client marks it required."""
    site.plugin_fq = " +dataset_type:dataset"
    names = [p["name"] for p in CKANClient(site.url, safe_session(LOCAL), token=TOKEN).iter_packages(rows=5)]
    assert names == [f"ds-{i:02d}" for i in range(20)]


def test_a_short_count_is_an_incomplete_listing(site):
    site.count_bonus = 3
    with pytest.raises(IncompleteEnumeration, match="remain"):
        list(CKANClient(site.url, safe_session(LOCAL), token=TOKEN).iter_packages(rows=5))


def test_a_count_lower_than_the_truth_does_not_end_the_listing_early(site):
    """The portal announces 12 datasets fewer than it has: every page still comes, to the empty one."""
    site.count_bonus = -12
    names = [p["name"] for p in CKANClient(site.url, safe_session(LOCAL), token=TOKEN).iter_packages(rows=5)]
    assert names == [f"ds-{i:02d}" for i in range(20)]


def test_a_portal_ignoring_the_keyset_filter_is_refused(site, monkeypatch):
    monkeypatch.setattr("tests.http_servers._id_range_start", lambda fq: None)
    with pytest.raises(IncompleteEnumeration, match="out of id order"):
        list(CKANClient(site.url, safe_session(LOCAL), token=TOKEN).iter_packages(rows=5))


def _upsert(ctx, portal_id, packages, now):
    rows = [r for p in packages for r in resource_rows(p)]
    upsert_portal_resources(ctx, portal_id, rows, now)
    return {resource_id_for(portal_id, r["external_id"]) for r in rows}


def test_gone_only_after_n_complete_sweeps_and_never_from_an_incomplete_one(actx, site):
    actx.settings = actx.settings.replace(archiver_gone_after_sweeps=2, archiver_gone_after_days=0, archiver_gone_max_percent=10)
    portal = add_portal(actx, "gone-n", site.url)
    now = utcnow()
    _upsert(actx, portal.id, site.packages, now)
    rest = site.packages[1:]
    seen = _upsert(actx, portal.id, rest, now)
    assert sweep_gone(actx, portal.id, seen, now, complete=False)["refused"]
    first = sweep_gone(actx, portal.id, seen, now + timedelta(hours=1))
    assert (first["gone"], first["missing"], first["live"], first["refused"]) == (0, 1, 20, None)
    second = sweep_gone(actx, portal.id, seen, now + timedelta(hours=2))
    assert (second["gone"], second["missing"]) == (1, 1)
    with actx.db.session() as s:
        res = s.scalars(select(Resource).where(Resource.external_id == "r-00", Resource.portal_id == portal.id)).one()
        assert res.gone_at is not None and res.missing_sweeps == 2
    _upsert(actx, portal.id, site.packages[:1], now)  # listed again: live, counters reset
    with actx.db.session() as s:
        res = s.get(Resource, res.id)
        assert res.gone_at is None and res.missing_sweeps == 0 and res.missing_since is None


def test_gone_after_d_days_absent(actx, site):
    actx.settings = actx.settings.replace(archiver_gone_after_sweeps=100, archiver_gone_after_days=3, archiver_gone_max_percent=10)
    portal = add_portal(actx, "gone-d", site.url)
    now = utcnow()
    _upsert(actx, portal.id, site.packages, now)
    seen = _upsert(actx, portal.id, site.packages[1:], now)
    assert sweep_gone(actx, portal.id, seen, now, batch=3)["gone"] == 0
    assert sweep_gone(actx, portal.id, seen, now + timedelta(days=3), batch=3)["gone"] == 1


def run_sweep_job(ctx, portal: str):
    enqueue, shutdown = inline_dispatcher(ctx, workers=2)
    ctx.enqueue = enqueue
    try:
        job = jobs.submit(ctx, "sweep_portal", {"portal": portal, "recheck": "due"}, enqueue=False)
        runner.run_job(ctx, job.id)
    finally:
        shutdown()
    return jobs.get(ctx, job.id)


def test_a_token_that_lost_access_marks_nothing_gone(actx, nginx):
    """Half the portal is private; the token stops seeing it: the share threshold refuses."""
    (nginx.root / "safety.csv").write_bytes(b"s,1\n")
    packages = [ckan_package(f"p-{i}", "org", [(f"pr-{i}", f"{nginx.url}/safety.csv")], private=i % 2 == 0) for i in range(6)]
    site = FakeCKAN(packages, token=TOKEN, max_rows=4).start()
    try:
        add_portal(actx, "lost-token", site.url, api_token=TOKEN)
        assert run_sweep_job(actx, "lost-token").status == "succeeded"
        site.token = "rotated"
        job = run_sweep_job(actx, "lost-token")
        assert job.status == "succeeded" and job.result["gone"] == 0
        site.count_bonus = 1
        assert run_sweep_job(actx, "lost-token").status == "failed"  # a short listing fails the sweep
    finally:
        site.stop()
    with actx.db.session() as s:
        rows = s.scalars(select(Resource).where(Resource.external_id.like("pr-%"))).all()
        assert len(rows) == 6 and all(r.gone_at is None and r.missing_sweeps == 0 for r in rows)
        assert sorted(r.private for r in rows) == [False] * 3 + [True] * 3


def test_a_sweep_that_would_mark_too_much_gone_marks_nothing_and_says_so(actx, nginx):
    """The portal's search index loses half of the datasets: the sweep job succeeds, marks
    none gone, counts none missing, and its result says why."""
    actx.settings = actx.settings.replace(archiver_gone_after_sweeps=1, archiver_gone_max_percent=10)
    (nginx.root / "share.csv").write_bytes(b"s,1\n")
    packages = [ckan_package(f"sh-{i:02d}", "org", [(f"sh-r-{i:02d}", f"{nginx.url}/share.csv")]) for i in range(20)]
    site = FakeCKAN(packages, max_rows=6).start()
    try:
        add_portal(actx, "share", site.url)
        assert run_sweep_job(actx, "share").result["gone"] == 0
        site.packages = site.packages[::2]
        job = run_sweep_job(actx, "share")
    finally:
        site.stop()
    assert job.status == "succeeded" and (job.result["resources"], job.result["gone"], job.result["missing"]) == (10, 0, 0)
    assert "10 of 20 resources would be marked gone, more than ARCHIVER_GONE_MAX_PERCENT=10%" in job.result["gone_refused"]
    with actx.db.session() as s:
        rows = s.scalars(select(Resource).where(Resource.external_id.like("sh-r-%"))).all()
    assert len(rows) == 20 and all(r.gone_at is None and r.missing_sweeps == 0 for r in rows)


def test_a_token_that_lost_one_organization_marks_none_of_its_private_resources_gone(actx, nginx):
    """A small share of the portal (under the threshold) is private to an organization the token
    no longer reads: absent from every listing, never counted missing; a private dataset the
    token still reads and that was deleted is marked gone as usual."""
    actx.settings = actx.settings.replace(archiver_gone_after_sweeps=2, archiver_gone_after_days=0, archiver_gone_max_percent=10)
    (nginx.root / "org-loss.csv").write_bytes(b"o,1\n")
    url = f"{nginx.url}/org-loss.csv"
    packages = [ckan_package(f"pub-{i:02d}", "pub", [(f"ol-pub-{i:02d}", url)]) for i in range(18)]
    packages += [ckan_package("alpha-secret", "alpha", [("ol-alpha", url)], private=True), ckan_package("beta-secret", "beta", [("ol-beta", url)], private=True)]
    site = FakeCKAN(packages, token=TOKEN, max_rows=7).start()
    try:
        add_portal(actx, "org-loss", site.url, api_token=TOKEN)
        assert run_sweep_job(actx, "org-loss").result["resources"] == 20
        site.readable_orgs = {"pub", "alpha"}  # the token's user left organization beta
        site.packages = [p for p in site.packages if p["name"] != "alpha-secret"]  # and alpha's dataset was deleted
        results = [run_sweep_job(actx, "org-loss").result for _ in range(3)]
        site.token = "rotated"  # then the token stops working altogether
        results.append(run_sweep_job(actx, "org-loss").result)
    finally:
        site.stop()
    assert [(r["resources"], r["gone"], r["unreadable"], r["gone_refused"]) for r in results] == [(18, 0, 1, None), (18, 1, 1, None), (18, 0, 1, None), (18, 0, 1, None)]
    with actx.db.session() as s:
        rows = {r.external_id: r for r in s.scalars(select(Resource).where(Resource.external_id.like("ol-%")))}
    assert rows["ol-alpha"].gone_at is not None
    assert rows["ol-beta"].gone_at is None and rows["ol-beta"].missing_sweeps == 0
    assert all(r.gone_at is None for k, r in rows.items() if k.startswith("ol-pub-"))


def _two_versions(ctx, srv: ScenarioServer, n: int) -> list[str]:
    ids = []
    for i in range(n):
        rid = upsert_url(ctx, f"{srv.url}/versioned?res={i}&u={id(ctx)}")
        for body in (b"one\n", b"two\n"):
            srv.versioned_body = body + str(i).encode()
            assert archive_resource(ctx, rid, force=True)["archival"]["status_id"] == 0
        ids.append(rid)
    return ids


@pytest.fixture
def own_server():
    srv = ScenarioServer().start()
    yield srv
    srv.stop()


def test_prune_keeps_the_last_copy_of_a_gone_resource_for_the_grace_period(actx, own_server):
    actx.settings = actx.settings.replace(archiver_gone_grace_days=30)
    [rid] = _two_versions(actx, own_server, 1)
    with actx.db.session() as s:
        s.get(Resource, rid).gone_at = utcnow() - timedelta(days=1)
        newest = s.get(Archival, rid).cache_key
    report = prune(actx, keep=3)
    assert report["versions_deleted"] == 1 and report["gone_kept_for_grace"] == 1
    assert actx.storage.stat(newest) is not None
    with actx.db.session() as s:
        assert s.get(Archival, rid).cache_key == newest
        s.get(Resource, rid).gone_at = utcnow() - timedelta(days=31)
    assert prune(actx, keep=3)["versions_deleted"] == 1
    assert actx.storage.stat(newest) is None


def test_prune_and_report_page_through_more_rows_than_one_batch(actx, own_server):
    ids = _two_versions(actx, own_server, 5)
    report = prune(actx, keep=1, batch=2)
    assert report["versions_deleted"] == 5
    with actx.db.session() as s:
        live = s.scalars(select(ArchiveVersion.resource_id).where(ArchiveVersion.resource_id.in_(ids), ArchiveVersion.deleted_at.is_(None))).all()
    assert sorted(live) == sorted(ids)
    assert broken_links(actx, batch=2)["totals"] == broken_links(actx)["totals"]
    assert broken_links(actx, batch=2)["totals"]["resources"] >= 5


class Endless(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if "deep" in self.path:  # small, but nested deeper than Python's json can follow
            body = b"[" * 200_000 + b"]" * 200_000
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if "declared" in self.path:
            self.send_header("Content-Length", str(10**12))
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(b'{"success": true, "result": {"results": [')
            for _ in range(100_000):  # bounded: about 6.5 GB if the client read it all
                self.wfile.write(b"[" * 65536)
                owner.sent += 65536
        except OSError:
            pass


class EndlessCKAN(_Base):
    def __init__(self):
        self.sent = 0
        super().__init__(Endless)


def test_a_huge_ckan_answer_is_refused_with_a_bounded_read():
    srv = EndlessCKAN().start()
    try:
        client = CKANClient(srv.url, safe_session(LOCAL), timeout=5, max_response_bytes=1_000_000)
        with pytest.raises(CKANError, match="larger than the limit of 1000000"):
            client.action("package_search")
        assert srv.sent < 50_000_000  # the client hung up; socket buffers hold the rest
        declared = CKANClient(srv.url + "/declared", safe_session(LOCAL), timeout=5, max_response_bytes=1_000_000)
        with pytest.raises(CKANError, match="larger than the limit"):
            declared.action("package_search")
        deep = CKANClient(srv.url + "/deep", safe_session(LOCAL), timeout=5, max_response_bytes=1_000_000)
        with pytest.raises(CKANError, match="not a CKAN JSON answer"):
            deep.action("package_search")
    finally:
        srv.stop()


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_portal_trickling_its_answer_is_cut_off_at_the_total_timeout(actx, part):
    """Each read is quick, the whole answer is not: the CKAN client of a registered portal ends
    the call at ARCHIVER_TOTAL_TIMEOUT instead of waiting as long as the portal likes."""
    from tests.http_servers import TricklingServer

    actx.settings = actx.settings.replace(archiver_total_timeout=1)
    srv = TricklingServer(part).start()
    try:
        portal = add_portal(actx, f"trickle-{part}", srv.url)
        with pytest.raises(CKANError, match="package_search on .*: no complete answer within 1s"):
            client_for(actx, portal).action("package_search", {"q": "*:*"})
    finally:
        srv.stop()


def test_a_private_datasets_copy_is_served_to_operators_only(api):
    """Swept from a fake portal whose token sees one private dataset: its cache URL answers
    404 without a token and to a read-only token, 302 to an operator; public ones stay open."""
    from exporter.config import as_networks
    from tests.test_api_archives import _path

    api.ctx.settings = api.ctx.settings.replace(archiver_allow_networks=as_networks("ARCHIVER_ALLOW_NETWORKS", "127.0.0.0/8"))
    files = ScenarioServer().start()
    packages = [
        ckan_package("open", "org", [("res-open", f"{files.url}/data.csv?body=open")]),
        ckan_package("secret", "org", [("res-secret", f"{files.url}/data.csv?body=secret")], private=True),
    ]
    site = FakeCKAN(packages, token=TOKEN).start()
    try:
        portal = add_portal(api.ctx, "private-portal", site.url, api_token=TOKEN)
        client = CKANClient(site.url, safe_session(LOCAL), token=TOKEN)
        rows = [r for p in client.iter_packages() for r in resource_rows(p)]
        upsert_portal_resources(api.ctx, portal.id, rows, utcnow())
        ids = {r["external_id"]: resource_id_for(portal.id, r["external_id"]) for r in rows}
        urls = {ext: archive_resource(api.ctx, rid)["archival"]["cache_url"] for ext, rid in ids.items()}
    finally:
        site.stop()
        files.stop()
    secret, open_ = _path(urls["res-secret"]), _path(urls["res-open"])
    assert api.client.get(open_).status_code == 302
    missing = api.client.get(f"/api/v1/resources/{resource_id_for(portal.id, 'no-such')}/download")
    hidden = api.client.get(secret)
    assert hidden.status_code == 404 and hidden.json["error"] == missing.json["error"].replace(resource_id_for(portal.id, "no-such"), ids["res-secret"])
    assert api.get(secret.removeprefix("/api/v1"), who="reader").status_code == 404
    served = api.get(secret.removeprefix("/api/v1"), who="operator")
    assert served.status_code == 302 and api.client.get(_path(served.headers["Location"])).data == b"secret"


@pytest.fixture
def served_api(api):
    """The API app served over HTTP on 127.0.0.1, with the archiver allowed to reach 127.0.0.0/8."""
    from exporter.config import as_networks
    from tests.dumps_helpers import served

    api.ctx.settings = api.ctx.settings.replace(archiver_allow_networks=as_networks("ARCHIVER_ALLOW_NETWORKS", "127.0.0.0/8"))
    with served(api.ctx) as srv:
        yield api, srv.url


def test_over_http_a_copy_is_open_only_while_its_portal_lists_it_as_public(served_api):
    """Over HTTP against the real routes, after real sweeps: a public resource's copy is open;
    a private dataset's is a 404 without a token and to a read-only token, a 302 to an operator;
    a public dataset the portal then hides from our token (made private to an organization the
    token does not read) is for operators only from the next sweep on; an ad-hoc copy is reached
    only by its keyed id, not by the uuid5 of its URL."""
    import requests

    from tests.test_api_archives import _path

    api, base = served_api
    files = ScenarioServer().start()
    packages = [
        ckan_package("open", "org", [("h-open", f"{files.url}/data.csv?body=open")]),
        ckan_package("later", "later-org", [("h-later", f"{files.url}/data.csv?body=later")]),
        ckan_package("secret", "org", [("h-secret", f"{files.url}/data.csv?body=secret")], private=True),
    ]
    site = FakeCKAN(packages, token=TOKEN).start()
    adhoc_url = f"{files.url}/data.csv?body=adhoc"

    def download(rid: str, who: str | None = None) -> requests.Response:
        return requests.get(f"{base}/api/v1/resources/{rid}/download", headers=api.headers(who), allow_redirects=False, timeout=30)

    def body(resp: requests.Response) -> bytes:
        assert resp.status_code == 302, resp.text
        return requests.get(base + _path(resp.headers["Location"]), timeout=30).content

    try:
        portal = add_portal(api.ctx, "http-private", site.url, api_token=TOKEN)
        assert run_sweep_job(api.ctx, "http-private").result["checked"] == 3
        ids = {ext: resource_id_for(portal.id, ext) for ext in ("h-open", "h-later", "h-secret")}
        assert body(download(ids["h-open"])) == b"open" and body(download(ids["h-later"])) == b"later"
        for who in (None, "reader", "sp_a"):
            hidden = download(ids["h-secret"], who)
            assert hidden.status_code == 404 and hidden.json()["error"] == f"no archive resource {ids['h-secret']}"
        assert body(download(ids["h-secret"], "operator")) == b"secret"
        record = requests.get(f"{base}/api/v1/resources/{ids['h-secret']}", headers=api.headers("reader"), timeout=30)
        assert record.status_code == 404 and requests.get(f"{base}/api/v1/resources/{ids['h-secret']}", headers=api.headers("operator"), timeout=30).json()["resource"]["private"]
        report = {who: requests.get(f"{base}/api/v1/reports/broken-links", headers=api.headers(who), timeout=30).json()["totals"]["resources"] for who in ("reader", "operator")}
        assert report == {"reader": 2, "operator": 3}

        next(p for p in site.packages if p["name"] == "later")["private"] = True
        site.readable_orgs = {"org"}  # private to an organization the token does not read: gone from the listing
        assert run_sweep_job(api.ctx, "http-private").result["missing"] == 1
        assert download(ids["h-later"]).status_code == 404 and download(ids["h-later"], "reader").status_code == 404
        assert requests.get(f"{base}/api/v1/resources/{ids['h-later']}", headers=api.headers("reader"), timeout=30).status_code == 404
        assert body(download(ids["h-later"], "operator")) == b"later"
        assert body(download(ids["h-open"])) == b"open"

        adhoc = upsert_url(api.ctx, adhoc_url)
        assert archive_resource(api.ctx, adhoc)["archival"]["status_id"] == 0
    finally:
        site.stop()
        files.stop()
    assert download(resource_id_for(None, adhoc_url)).status_code == 404  # the uuid5 of the URL reaches nothing
    assert body(download(adhoc)) == b"adhoc"


def test_ad_hoc_resource_ids_are_not_computable_from_the_url(actx):
    import uuid

    url = "http://127.0.0.1:9/report.csv"
    rid = upsert_url(actx, url)
    assert rid == upsert_url(actx, url)  # one resource per URL
    assert rid != resource_id_for(None, url)  # the old, unkeyed uuid5 of the URL
    assert uuid.UUID(rid).version == 4
    other = actx.settings.replace(secret_key="another-secret-key-0123456789")
    from exporter.archiver.resources import adhoc_resource_id

    assert adhoc_resource_id(other.secret_key, url) != rid
