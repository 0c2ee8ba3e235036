"""A small CKAN Action API client: package_search paging and resource_patch write-back.

Portal URLs are user input, so the client goes through exporter.netsafety like every
archiver request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import requests

from ..context import Context
from ..errors import ExporterError
from ..jobs import record_task_status
from ..netsafety import Deadline, TooLarge, read_capped, request_following, safe_session
from .models import Archival, Portal, Resource
from .sessions import session_for

log = logging.getLogger(__name__)

PAGE_ROWS = 100
STABLE_SORT = "id asc"  # unique, so paging neither skips nor repeats a dataset
MAX_RESPONSE_BYTES = 50 * 1024 * 1024


class CKANError(ExporterError):
    """The portal answered with an error envelope, a non-JSON body, or not at all."""


class IncompleteEnumeration(CKANError):
    """The portal's listing ended short of the count it announced, or ignored the paging filter."""


def _solr_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class CKANClient:
    def __init__(
        self,
        base_url: str,
        session: requests.Session,
        token: str | None = None,
        timeout: float = 60,
        max_redirects: int = 5,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        call_seconds: float | None = None,
        session_factory: Callable[[Callable[[Any], None]], requests.Session] | None = None,
    ):
        """`timeout` bounds each read; with `call_seconds` and a `session_factory` (a safe_session
        maker taking on_socket), each call gets a session of its own and ends within call_seconds
        whatever the portal does (exporter.netsafety.Deadline)."""
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.token = token
        self.timeout = timeout
        self.max_redirects = max_redirects
        self.max_response_bytes = max_response_bytes
        self.call_seconds = call_seconds
        self.session_factory = session_factory

    def _read_capped(self, name: str, resp: requests.Response) -> bytes:
        """The body, refused (CKANError) once it grows past max_response_bytes."""
        try:
            return read_capped(resp, self.max_response_bytes, f"{name} on {self.base_url}")
        except TooLarge as exc:
            raise CKANError(str(exc)) from None
        except requests.RequestException as exc:
            raise CKANError(f"{name} on {self.base_url}: reading the answer failed: {exc}") from None

    def action(self, name: str, params: dict[str, Any] | None = None, data: dict[str, Any] | None = None) -> Any:
        """Call an action (GET with params, POST with a JSON body) and unwrap `{"success": true, "result": ...}`."""
        if self.call_seconds is None or self.session_factory is None:
            return self._call(self.session, name, params, data)
        with Deadline(self.call_seconds) as deadline, self.session_factory(deadline.watch) as session:
            try:
                result = self._call(session, name, params, data)
            except CKANError:
                if deadline.expired:
                    raise CKANError(f"{name} on {self.base_url}: no complete answer within {self.call_seconds:g}s") from None
                raise
        if deadline.expired:  # cut off while headers arrived: what was read is not an answer
            raise CKANError(f"{name} on {self.base_url}: no complete answer within {self.call_seconds:g}s")
        return result

    def _call(self, session: requests.Session, name: str, params: dict[str, Any] | None, data: dict[str, Any] | None) -> Any:
        url = f"{self.base_url}/api/3/action/{name}"
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = self.token
        method, kwargs = ("POST", {"json": data}) if data is not None else ("GET", {"params": params or {}})
        try:
            followed = request_following(session, method, url, max_redirects=self.max_redirects, headers=headers, timeout=self.timeout, stream=True, **kwargs)
        except (requests.RequestException, ExporterError) as exc:  # a refused address or redirect too
            raise CKANError(f"{name} on {self.base_url} failed: {exc}") from None
        resp = followed.response
        body = self._read_capped(name, resp)
        try:
            envelope = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            raise CKANError(f"{name} on {self.base_url}: HTTP {resp.status_code}, not a CKAN JSON answer") from None
        if not isinstance(envelope, dict) or not envelope.get("success"):
            error = envelope.get("error") if isinstance(envelope, dict) else None
            message = error.get("message") if isinstance(error, dict) else error
            raise CKANError(f"{name} on {self.base_url}: HTTP {resp.status_code}: {message or 'success is false'}")
        return envelope.get("result")

    def iter_packages(self, include_private: bool = True, rows: int = PAGE_ROWS) -> Iterator[dict[str, Any]]:
        """Every dataset, in id order, by keyset pages (`fq=+id:{last TO *]`, sort `id asc`).

        A dataset added or deleted during the sweep shifts no page, so none is skipped. The
        listing ends only at an empty page (one request more than the count implies), so a
        count lower than the truth cannot cut it short. Raises IncompleteEnumeration when a
        page is empty while datasets are announced, or the portal ignores the sort or filter:
        a caller must then treat the listing as partial.
        """
        last: str | None = None
        while True:
            params: dict[str, Any] = {"q": "*:*", "rows": rows, "sort": STABLE_SORT}
            if last is not None:
                # "+": a required clause even where a plugin appends its own "+dataset_type:..." to fq
                # and the default operator is OR (Lucene makes an unmarked clause optional then).
                params["fq"] = f"+id:{{{_solr_quote(last)} TO *]"
            if include_private and self.token:
                params["include_private"] = "true"
            result = self.action("package_search", params)
            page = result.get("results") if isinstance(result, dict) else None
            try:
                count = int(result.get("count") or 0) if isinstance(page, list) else -1
            except (TypeError, ValueError):
                count = -1
            if count < 0:
                raise CKANError(f"package_search on {self.base_url}: not a search result (results and count)")
            if not page:
                if count:
                    raise IncompleteEnumeration(f"package_search on {self.base_url}: an empty page while {count} datasets remain")
                return
            for pkg in page:
                pid = str(pkg.get("id") or "")
                if not pid or (last is not None and pid <= last):
                    raise IncompleteEnumeration(f"package_search on {self.base_url}: datasets out of id order ({pid!r} after {last!r}); the portal ignores sort or fq")
                last = pid
                yield pkg

    def readable_organizations(self) -> set[str] | None:
        """Names of the organizations whose private datasets the token may read
        (organization_list_for_user, permission read), or None when that is unknown: no token,
        or the portal did not answer. An empty set is a token that reads no private dataset."""
        if not self.token:
            return None
        try:
            result = self.action("organization_list_for_user", {"permission": "read"})
        except CKANError as exc:
            log.warning("archiver: %s: cannot tell which organizations the token reads: %s", self.base_url, exc)
            return None
        if not isinstance(result, list):
            return None
        return {str(org["name"]) for org in result if isinstance(org, dict) and org.get("name")}

    def resource_patch(self, resource_id: str, **fields: Any) -> dict[str, Any]:
        return self.action("resource_patch", data={"id": resource_id, **fields})


def resource_rows(package: dict[str, Any]) -> list[dict[str, Any]]:
    """The archive_resources columns for each resource of a CKAN package dict."""
    org = package.get("organization") or {}
    rows = []
    for r in package.get("resources") or []:
        if not r.get("id") or not r.get("url"):
            continue
        rows.append(
            {
                "external_id": str(r["id"])[:100],
                "url": str(r["url"]).strip(),
                "name": (r.get("name") or None) and str(r["name"])[:500],
                "format": (r.get("format") or None) and str(r["format"])[:100],
                "package_id": (package.get("id") or None) and str(package["id"])[:100],
                "package_name": (package.get("name") or None) and str(package["name"])[:200],
                "organization": (org.get("name") or None) and str(org["name"])[:200],
                "private": package.get("private") is True or str(package.get("private")).lower() == "true",
            }
        )
    return rows


def client_for(ctx: Context, portal: Portal) -> CKANClient:
    s = ctx.settings
    return CKANClient(
        portal.base_url, session_for(ctx), portal.api_token, timeout=s.archiver_read_timeout * 2, max_redirects=s.archiver_max_redirects,
        max_response_bytes=s.archiver_ckan_max_response_bytes, call_seconds=s.archiver_total_timeout,
        session_factory=lambda on_socket: safe_session(s.archiver_allow_networks, s.archiver_user_agent, on_socket=on_socket),
    )


def write_back_archival(ctx: Context, resource_id: str) -> dict[str, Any]:
    """Write cache_url, cache_last_updated, hash, size and mimetype to the portal (resource_patch)."""
    with ctx.db.session() as s:
        res = s.get(Resource, resource_id)
        arch = s.get(Archival, resource_id)
        portal = s.get(Portal, res.portal_id) if res and res.portal_id else None
        if not (res and arch and portal and portal.api_token and portal.write_back and arch.cache_key):
            return {"written": False, "reason": "no portal with a token and write-back, or nothing stored"}
        fields = {
            "cache_url": arch.cache_url,
            "cache_last_updated": arch.last_success.strftime("%Y-%m-%dT%H:%M:%S.%f") if arch.last_success else None,
            "hash": arch.sha256,
            "size": arch.size,
            "mimetype": arch.mimetype,
        }
        external_id = res.external_id
    error = None
    try:
        client_for(ctx, portal).resource_patch(external_id, **fields)
    except CKANError as exc:
        error = str(exc)
        log.warning("archiver: write-back of %s to %s failed: %s", resource_id, portal.base_url, exc)
    with ctx.db.session() as s:
        record_task_status(s, "resource", resource_id, "archiver_write_back", "failure" if error else "success", error=error, value=fields)
    return {"written": error is None, "error": error, "fields": fields}
