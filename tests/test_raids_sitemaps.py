"""The search index of a public export: sitemaps (50,000 URLs at most each), sitemap index, HTML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from exporter.config import SITEMAP_URL_LIMIT
from exporter.errors import ConfigError
from exporter.raids import sitemaps
from exporter.raids.sitemaps import landing_url
from tests.raids_helpers import OTHER_AGENCY, OTHER_SP, artifact, future, handle, record, run_export, save

NS = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}


def test_sitemaps_and_html_index_point_at_every_live_raid(ctx):
    ctx.settings = ctx.settings.replace(export_sitemap_max_urls=3, export_page_size=2, export_settle_seconds=0, export_public_base_url="https://cdn.example.org/raid/")
    save(ctx, *[record(n, title=f"Open & <raid> {n}") for n in range(1, 6)])
    save(ctx, record(6, access="embargoed", expiry=future(), title="Secret title"), record(7, sp=OTHER_SP, agency=OTHER_AGENCY))
    job = run_export(ctx, "export_public", {"agency": "038sjwq14"})
    index = ET.fromstring(ctx.storage.read_bytes(artifact(job, "sitemap").key))
    locs = [e.text for e in index.findall("s:sitemap/s:loc", NS)]
    prefix = artifact(job, "archive").key.rsplit("/", 1)[0]
    assert locs == [f"https://cdn.example.org/raid/{prefix}/sitemap-0000{i}.xml" for i in (1, 2)]
    urls = []
    for i in (1, 2):
        body = ctx.storage.read_bytes(artifact(job, f"sitemap-0000{i}").key)
        entries = ET.fromstring(body).findall("s:url", NS)
        assert 1 <= len(entries) <= 3
        assert all(e.find("s:lastmod", NS).text for e in entries)
        urls += [e.find("s:loc", NS).text for e in entries]
    assert urls == [handle(n) for n in range(1, 7)]
    assert job.result["search_index"]["urls"] == 6
    pages = [ctx.storage.read_bytes(artifact(job, f"index-0000{i}").key).decode() for i in (1, 2)]
    assert "Open &amp; &lt;raid&gt; 1" in pages[0] and f'href="{handle(6)}"' in pages[1]
    assert "Secret title" not in "".join(pages) and "embargoed" in pages[1]
    top = ctx.storage.read_bytes(artifact(job, "index").key).decode()
    assert 'href="index-00001.html"' in top and 'href="sitemap.xml"' in top and "6 raids" in top
    assert all(a.public for a in job.artifacts)


def test_a_sitemap_never_exceeds_the_limit_of_50000_urls(ctx, make_settings):
    # The limit is the default, and no setting above it is accepted.
    assert make_settings().export_sitemap_max_urls == 50000 == SITEMAP_URL_LIMIT
    assert make_settings(export_sitemap_max_urls="50000").export_sitemap_max_urls == 50000
    for bad in ("50001", "1000000", "0"):
        with pytest.raises(ConfigError, match="EXPORTER_EXPORT_SITEMAP_MAX_URLS"):
            make_settings(export_sitemap_max_urls=bad)
    # Sitemaps split exactly at a configured limit: 7 raids, 2 per file -> 2, 2, 2, 1.
    ctx.settings = ctx.settings.replace(export_sitemap_max_urls=2, export_page_size=3, export_settle_seconds=0)
    save(ctx, *[record(n) for n in range(1, 8)])
    job = run_export(ctx, "export_public", {"agency": "038sjwq14"})
    index = ET.fromstring(ctx.storage.read_bytes(artifact(job, "sitemap").key))
    assert len(index.findall("s:sitemap", NS)) == 4
    sizes = [len(ET.fromstring(ctx.storage.read_bytes(artifact(job, f"sitemap-0000{i}").key)).findall("s:url", NS)) for i in (1, 2, 3, 4)]
    assert sizes == [2, 2, 2, 1]
    # A limit set past the sitemaps.org one in code (not through the parser) is still capped.
    ctx.settings = ctx.settings.replace(export_sitemap_max_urls=10**9)
    assert sitemaps.per_file_limit(ctx.settings) == SITEMAP_URL_LIMIT


def test_landing_url():
    assert landing_url("{handle}", "https://raid.org.au/10378.1/1") == "https://raid.org.au/10378.1/1"
    assert landing_url("{handle}", "10378.1/1") == "https://raid.org/10378.1/1"
    assert landing_url("https://portal.example/raid?h={handle}", "10378.1/1") == "https://portal.example/raid?h=10378.1/1"
