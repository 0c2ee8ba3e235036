"""The params of the archiver's job kinds, checked and completed (a kind's `normalize`)."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest
from .resources import validate_url

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
