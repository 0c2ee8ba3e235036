"""The archiver's job kinds: sweep_portal and archive_urls (queue `archive`)."""

from __future__ import annotations

from .. import orphans
from ..kinds import JobKind, register
from ..parts import register_handler
from .models import stored_keys, warc_keys
from .params import normalize_sweep, normalize_urls
from .sweep import archive_part, finish_archive_urls, finish_sweep, run_archive_urls, run_sweep

register(JobKind(name="sweep_portal", task="exporter.sweep_portal", queue="archive", run=run_sweep, normalize=normalize_sweep, description="enumerate a CKAN portal's resources and archive those due"))
register(JobKind(name="archive_urls", task="exporter.archive_urls", queue="archive", run=run_archive_urls, normalize=normalize_urls, description="archive a list of URLs"))
register_handler("sweep_portal", archive_part, finish_sweep)
register_handler("archive_urls", archive_part, finish_archive_urls)
orphans.register("archive/", stored_keys)
orphans.register("warc/", warc_keys)
