"""The archiver's job kinds: sweep_portal and archive_urls (queue `archive`)."""

from __future__ import annotations

from typing import Any

from .. import orphans
from ..errors import InvalidRequest
from ..kinds import JobKind, register
from ..parts import register_handler
from .models import stored_keys
from .resources import validate_url
from .sweep import archive_part, finish_archive_urls, finish_sweep, run_archive_urls, run_sweep

MAX_URLS = 1000


def _reject_unknown(params: dict[str, Any]) -> None:
    if params:
        raise InvalidRequest(f"unknown parameter(s): {', '.join(sorted(params))}", field=sorted(params)[0])


def _bool(params: dict[str, Any], name: str, default: bool) -> bool:
    value = params.pop(name, default)
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be true or false", field=name)
    return value


def normalize_sweep(params: dict[str, Any]) -> dict[str, Any]:
    params = dict(params)
    portal = params.pop("portal", None)
    if not isinstance(portal, str) or not portal.strip():
        raise InvalidRequest("portal (a registered portal's name or id) is required", field="portal")
    recheck = params.pop("recheck", "due")
    if recheck not in ("due", "all"):
        raise InvalidRequest("recheck must be 'due' (resources whose next check time came) or 'all'", field="recheck")
    _reject_unknown(params)
    return {"portal": portal.strip(), "recheck": recheck}


def normalize_urls(params: dict[str, Any]) -> dict[str, Any]:
    params = dict(params)
    urls = params.pop("urls", None)
    if not isinstance(urls, list) or not urls:
        raise InvalidRequest("urls must be a non-empty list of http(s) URLs", field="urls")
    if len(urls) > MAX_URLS:
        raise InvalidRequest(f"at most {MAX_URLS} URLs per request", field="urls")
    clean = list(dict.fromkeys(validate_url(u, field=f"urls[{i}]") for i, u in enumerate(urls)))
    check_only = _bool(params, "link_check_only", False)
    _reject_unknown(params)
    return {"urls": clean, "link_check_only": check_only}


register(JobKind(name="sweep_portal", task="exporter.sweep_portal", queue="archive", run=run_sweep, normalize=normalize_sweep, description="enumerate a CKAN portal's resources and archive those due"))
register(JobKind(name="archive_urls", task="exporter.archive_urls", queue="archive", run=run_archive_urls, normalize=normalize_urls, description="archive a list of URLs"))
register_handler("sweep_portal", archive_part, finish_sweep)
register_handler("archive_urls", archive_part, finish_archive_urls)
orphans.register("archive/", stored_keys)
