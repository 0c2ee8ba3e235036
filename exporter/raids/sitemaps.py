"""The search index of a public export: sitemap files, a sitemap index and static HTML pages.

Every live raid of the agency gets a <url> (its landing page) in a sitemap of at most
EXPORT_SITEMAP_MAX_URLS entries, and a line in the HTML index. Only public facts are
used: an embargoed raid shows its handle, create date and access type, never its title.
"""

from __future__ import annotations

from datetime import date
from html import escape
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from sqlalchemy import Connection, String, and_, case, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from ..config import SITEMAP_URL_LIMIT
from ..runner import JobRun
from .models import Raid
from .public import published_in_full_sql
from .reading import keyset_pages
from .scope import Scope

SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
HTML_HEAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><h1>{title}</h1>
"""


class UTCDate(FunctionElement):
    """The UTC calendar date of a UTC timestamp column, as 'YYYY-MM-DD' text, computed by the database."""

    type = String()
    inherit_cache = True


@compiles(UTCDate, "postgresql")
def _utc_date_pg(element, compiler, **kw):
    return f"to_char(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


@compiles(UTCDate)
def _utc_date_sqlite(element, compiler, **kw):  # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC
    return f"substr(({compiler.process(element.clauses, **kw)}), 1, 10)"


def landing_url(template: str, handle: str) -> str:
    """The raid's landing page: the handle itself when it is a URL, else the template."""
    if template == "{handle}" and handle.startswith(("http://", "https://")):
        return handle
    if template == "{handle}":
        return "https://raid.org/" + handle
    return template.replace("{handle}", handle)


class Rolling:
    """A sequence of numbered artifacts (sitemap-00001.xml, ...), each with a header and footer."""

    def __init__(self, job: JobRun, prefix: str, stem: str, ext: str, content_type: str, header, footer: bytes):
        self.job, self.prefix, self.stem, self.ext, self.content_type = job, prefix, stem, ext, content_type
        self.header, self.footer = header, footer
        self.names: list[str] = []
        self._cm = None
        self._fh = None

    def open_next(self) -> None:
        self.close()
        name = f"{self.stem}-{len(self.names) + 1:05d}.{self.ext}"
        self.names.append(name)
        self._cm = self.job.artifact(f"{self.stem}-{len(self.names):05d}", self.prefix + name, public=True, content_type=self.content_type)
        self._fh = self._cm.__enter__()
        self._fh.write(self.header(len(self.names)))

    def write(self, data: bytes) -> None:
        self._fh.write(data)

    def close(self, exc: BaseException | None = None) -> None:
        if self._cm is not None:
            cm, self._cm = self._cm, None
            if exc is None:
                self._fh.write(self.footer)
                cm.__exit__(None, None, None)
            else:
                cm.__exit__(type(exc), exc, exc.__traceback__)


def public_base_url(settings) -> str:
    """Where published public export objects are reachable, ending in a slash."""
    return (settings.export_public_base_url or settings.public_url + "/public").rstrip("/") + "/"


def per_file_limit(settings) -> int:
    """URLs per sitemap file: the setting, never above the sitemaps.org limit."""
    return min(settings.export_sitemap_max_urls, SITEMAP_URL_LIMIT)


def write_search_index(job: JobRun, conn: Connection, scope: Scope, prefix: str, as_of: date, archive_name: str = "raids.zip") -> dict[str, Any]:
    """Write the sitemaps, sitemap index and HTML index of the agency's live raids."""
    settings = job.settings
    per_file = per_file_limit(settings)
    base = public_base_url(settings)
    template = settings.export_landing_url
    title = f"Research activities (RAiD) of registration agency {scope.id}"
    sitemaps = Rolling(job, prefix, "sitemap", "xml", "application/xml", lambda _n: f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="{SITEMAP_NS}">\n'.encode(), b"</urlset>\n")
    pages = Rolling(job, prefix, "index", "html", "text/html", lambda n: (HTML_HEAD.format(title=escape(f"{title}, page {n}")) + '<p><a href="index.html">All pages</a></p>\n<ul>\n').encode(), b"</ul>\n</body></html>\n")
    public = published_in_full_sql(as_of)
    # Only public facts leave the database: an embargoed raid's title is never selected.
    query = select(
        Raid.id,
        Raid.handle,
        case((public, func.coalesce(Raid.title, Raid.handle)), else_=Raid.handle).label("shown"),
        case((public, literal("open")), else_=literal("embargoed")).label("label"),
        UTCDate(case((public, Raid.updated_at), else_=Raid.created_at)).label("lastmod"),
        UTCDate(Raid.created_at).label("created"),
    ).where(and_(scope.condition(), Raid.deleted_at.is_(None)))
    count = 0
    try:
        for rows in keyset_pages(conn, query, "id", settings.export_page_size):
            xml, html = [], []
            for _id, handle, shown, label, lastmod, created in rows:
                if count % per_file == 0:
                    sitemaps.open_next()
                    pages.open_next()
                count += 1
                landing = landing_url(template, handle)
                url = escape(landing)
                eh = url if handle == landing else escape(handle)
                xml.append(f"<url><loc>{url}</loc><lastmod>{lastmod}</lastmod></url>\n")
                html.append(f'<li><a href="{url}">{escape(shown)}</a> <small>{eh} · created {created} · {label}</small></li>\n')
                if count % per_file == 0:
                    sitemaps.write("".join(xml).encode())
                    pages.write("".join(html).encode())
                    xml, html = [], []
            if xml:
                sitemaps.write("".join(xml).encode())
                pages.write("".join(html).encode())
        sitemaps.close()
        pages.close()
    except BaseException as exc:
        sitemaps.close(exc)
        pages.close(exc)
        raise
    entries = "".join(f"<sitemap><loc>{xml_escape(base + prefix + name)}</loc><lastmod>{as_of.isoformat()}</lastmod></sitemap>\n" for name in sitemaps.names)
    job.add_artifact("sitemap", prefix + "sitemap.xml", f'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex xmlns="{SITEMAP_NS}">\n{entries}</sitemapindex>\n'.encode(), public=True, content_type="application/xml")
    links = "".join(f'<li><a href="{name}">Page {i} ({min(per_file, count - (i - 1) * per_file)} raids)</a></li>\n' for i, name in enumerate(pages.names, 1))
    body = HTML_HEAD.format(title=escape(title)) + f'<p>{count} raids as of {as_of.isoformat()}. <a href="sitemap.xml">Sitemap index</a>, <a href="{escape(archive_name)}">archive</a>.</p>\n<ol>\n{links}</ol>\n</body></html>\n'
    job.add_artifact("index", prefix + "index.html", body.encode(), public=True, content_type="text/html")
    return {"urls": count, "sitemap_index": prefix + "sitemap.xml", "sitemaps": [prefix + n for n in sitemaps.names], "html_index": prefix + "index.html", "html_pages": [prefix + n for n in pages.names]}
