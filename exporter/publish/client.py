"""A small client of Zenodo's records API (the InvenioRDM one Zenodo runs since October 2023).

One requests session made by exporter.netsafety (internal addresses refused unless
ZENODO_ALLOW_NETWORKS opens them), the token sent as `Authorization: Bearer`, JSON bodies as
`application/json`, file contents as `application/octet-stream`, a timeout on every call.

How it waits:
- 429: for Retry-After (or until X-RateLimit-Reset), then sends the same request again;
- `X-RateLimit-Remaining: 0`: the next request waits until X-RateLimit-Reset;
- 5xx, timeouts, connection errors: backoff with jitter, but only for requests that are
  safe to repeat (GET, PUT, DELETE, a file commit). A request that creates something
  (a draft, a version, file entries, the publication) is never repeated blindly: it
  raises TransientError and the caller asks Zenodo what happened before trying again;
- any other 4xx raises ZenodoError with Zenodo's own message.
A wait longer than ZENODO_RETRY_AFTER_MAX, or attempts used up, raise TransientError.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import quote, urljoin, urlsplit

import requests
import tenacity

from ..errors import ConfigError, ExporterError, TransientError
from ..netsafety import BlockedAddress, safe_session
from ..retrying import retry_after, retry_delay

log = logging.getLogger(__name__)

USER_AGENT = "Exporter-publish/1.0 (+https://github.com/exporter)"
MAX_FILES = 100  # Zenodo's limits per record
MAX_RECORD_BYTES = 50 * 10**9
MAX_ANSWER_BYTES = 16 << 20  # a JSON answer larger than this is not read
CONNECT_TIMEOUT = 10.0
JSON = "application/json"
REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 3


class _Again(Exception):
    """One attempt failed in a way another may cure; `wait` seconds first (None: the backoff)."""

    def __init__(self, why: str, wait: float | None = None):
        super().__init__(why)
        self.wait = wait


class ZenodoError(ExporterError):
    """Zenodo refused a request (a 4xx other than 429); the message is Zenodo's own."""

    def __init__(self, status: int, method: str, path: str, message: str):
        self.status, self.method, self.path = status, method, path
        super().__init__(f"Zenodo refused {method} {path} ({status}): {message}")


def configured(settings) -> bool:
    return bool(settings.zenodo_url and settings.zenodo_token)


def require_configured(settings) -> None:
    if not configured(settings):
        raise ConfigError("publishing to Zenodo is not configured: set EXPORTER_ZENODO_URL (https://zenodo.org/api or https://sandbox.zenodo.org/api) and EXPORTER_ZENODO_TOKEN")


def file_path(record_id: str, key: str, action: str = "") -> str:
    return f"/records/{record_id}/draft/files/{quote(key, safe='')}" + (f"/{action}" if action else "")


@dataclass
class ZenodoClient:
    base_url: str
    token: str
    session: requests.Session
    timeout: float = 120
    attempts: int = 5
    backoff: float = 1.0
    wait_max: float = 300
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    _not_before: float = field(default=0.0, repr=False)

    @classmethod
    def from_settings(cls, settings, sleep: Callable[[float], None] = time.sleep) -> ZenodoClient:
        require_configured(settings)
        return cls(
            settings.zenodo_url.rstrip("/"),
            settings.zenodo_token,
            safe_session(settings.zenodo_allow_networks, user_agent=USER_AGENT),
            timeout=settings.zenodo_timeout,
            attempts=settings.zenodo_max_attempts,
            backoff=settings.zenodo_retry_backoff_ms / 1000,
            wait_max=settings.zenodo_retry_after_max,
            sleep=sleep,
        )

    # -- one request --------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: dict[str, Any] | None = None,
        upload: Callable[[], BinaryIO] | None = None,
        size: int | None = None,
        repeatable: bool | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """Send one request (again, when allowed); returns the decoded JSON answer, or None (204, or 404 with missing_ok)."""
        repeatable = method in ("GET", "PUT", "DELETE") if repeatable is None else repeatable
        headers = {"Authorization": f"Bearer {self.token}", "Accept": JSON}
        if json is not None:
            headers["Content-Type"] = JSON
        elif upload is not None:
            headers["Content-Type"] = "application/octet-stream"
        redirects = 0

        def attempt() -> Any:
            nonlocal path, redirects
            self._wait_for_quota()
            body = _Body(upload(), size) if upload is not None else None
            try:
                resp = self.session.request(method, self.base_url + path, json=json, data=body, params=params, headers=headers, timeout=(min(CONNECT_TIMEOUT, self.timeout), self.timeout), allow_redirects=False, stream=True)
            except BlockedAddress as exc:
                raise ConfigError(f"{exc} (see EXPORTER_ZENODO_ALLOW_NETWORKS)") from None
            except requests.RequestException as exc:
                raise self._again(method, path, repeatable, f"{type(exc).__name__}: {exc}") from None
            finally:
                if body is not None:
                    body.close()
            try:
                self._note_quota(resp)
                status = resp.status_code
                if status == 429:
                    raise self._rate_limited(resp)
                if status >= 500:
                    raise self._again(method, path, repeatable, f"HTTP {status}: {_message(resp)}")
                if status in REDIRECTS and method == "GET" and redirects < MAX_REDIRECTS:
                    path, redirects = self._redirected(resp, method, path), redirects + 1
                    resp.close()
                    return attempt()  # a redirect costs no attempt
                if status == 404 and missing_ok:
                    return None
                if status >= 300:
                    raise ZenodoError(status, method, path, _message(resp))
                data = _read(resp)
            finally:
                resp.close()
            return _json(data, method, path) if data else None

        def wait(state: tenacity.RetryCallState) -> float:
            asked = state.outcome.exception().wait
            return retry_delay(state.attempt_number, self.backoff, self.wait_max) if asked is None else asked

        def note(state: tenacity.RetryCallState) -> None:
            log.info("zenodo: %s %s: %s; attempt %d in %.1fs", method, path, state.outcome.exception(), state.attempt_number + 1, state.upcoming_sleep)

        try:
            return tenacity.Retrying(
                stop=tenacity.stop_after_attempt(self.attempts), retry=tenacity.retry_if_exception_type(_Again),
                wait=wait, sleep=self.sleep, before_sleep=note, reraise=True,
            )(attempt)
        except _Again as exc:
            raise TransientError(f"Zenodo: {method} {path} failed {self.attempts} times, last: {exc}") from None

    def _redirected(self, resp: requests.Response, method: str, path: str) -> str:
        """The path a GET is redirected to (InvenioRDM answers /versions/latest so), on Zenodo's own origin only: the token never goes elsewhere."""
        target = urljoin(self.base_url + path, resp.headers.get("Location") or "")
        base = urlsplit(self.base_url)
        to = urlsplit(target)
        if (to.scheme, to.netloc) != (base.scheme, base.netloc) or not to.path.startswith(base.path + "/"):
            raise ZenodoError(resp.status_code, method, path, f"redirected to {target}, outside {self.base_url}; not followed")
        return to.path[len(base.path):] + (f"?{to.query}" if to.query else "")

    def _again(self, method: str, path: str, repeatable: bool, why: str) -> Exception:
        """A failure worth another attempt, if the request is safe to repeat."""
        if not repeatable:
            return TransientError(f"Zenodo: {method} {path} failed ({why}); not repeated blindly, the job resumes from what Zenodo holds")
        return _Again(why)

    def _rate_limited(self, resp: requests.Response) -> Exception:
        """429: another attempt after Retry-After (or the quota's reset, or the backoff), unless that is too long."""
        wait = retry_after(resp.headers.get("Retry-After"), float("inf"))
        if wait is None:
            wait = max(0.0, self._not_before - self.clock()) or None
        if wait is not None and wait > self.wait_max:
            return TransientError(f"Zenodo's rate limit asks to wait {wait:.0f} s (more than ZENODO_RETRY_AFTER_MAX)")
        return _Again("rate limited (429)", wait)

    def _note_quota(self, resp: requests.Response) -> None:
        """Remember X-RateLimit-Reset when X-RateLimit-Remaining says the quota is spent."""
        remaining, reset = resp.headers.get("X-RateLimit-Remaining"), resp.headers.get("X-RateLimit-Reset")
        try:
            if remaining is not None and int(remaining) <= 0 and reset:
                self._not_before = float(reset)
        except ValueError:
            pass

    def _wait_for_quota(self) -> None:
        wait = self._not_before - self.clock()
        if wait <= 0:
            return
        if wait > self.wait_max:
            raise TransientError(f"Zenodo's rate limit resets in {wait:.0f} s (more than ZENODO_RETRY_AFTER_MAX)")
        log.info("zenodo: rate limit spent; waiting %.1fs for its reset", wait)
        self.sleep(wait)

    # -- the records API ------------------------------------------------------------------

    def create_draft(self, data: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", "/records", json=data, repeatable=False)

    def new_version(self, record_id: str) -> dict[str, Any]:
        return self.call("POST", f"/records/{record_id}/versions", repeatable=False)

    def latest_version(self, record_id: str) -> dict[str, Any]:
        """The newest published version of the record's concept (Zenodo redirects to it; followed)."""
        return self.call("GET", f"/records/{record_id}/versions/latest")

    def record(self, record_id: str) -> dict[str, Any] | None:
        """The published record, or None."""
        return self.call("GET", f"/records/{record_id}", missing_ok=True)

    def draft(self, record_id: str) -> dict[str, Any] | None:
        return self.call("GET", f"/records/{record_id}/draft", missing_ok=True)

    def update_draft(self, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
        return self.call("PUT", f"/records/{record_id}/draft", json=data)

    def delete_draft(self, record_id: str) -> None:
        self.call("DELETE", f"/records/{record_id}/draft", missing_ok=True)

    def drafts(self, query: str) -> list[dict[str, Any]]:
        """The caller's unpublished drafts matching `query` (every version), newest first."""
        found = self.call("GET", "/user/records", params={"q": query, "allversions": "true", "sort": "newest", "size": 50}) or {}
        return [hit for hit in (found.get("hits") or {}).get("hits", []) if not hit.get("is_published")]

    def draft_files(self, record_id: str) -> list[dict[str, Any]]:
        return (self.call("GET", f"/records/{record_id}/draft/files") or {}).get("entries", [])

    def start_uploads(self, record_id: str, keys: list[str]) -> None:
        self.call("POST", f"/records/{record_id}/draft/files", json=[{"key": k} for k in keys], repeatable=False)

    def upload(self, record_id: str, key: str, open_body: Callable[[], BinaryIO], size: int) -> None:
        self.call("PUT", file_path(record_id, key, "content"), upload=open_body, size=size)

    def commit(self, record_id: str, key: str) -> dict[str, Any]:
        return self.call("POST", file_path(record_id, key, "commit"), repeatable=True)

    def delete_file(self, record_id: str, key: str) -> None:
        self.call("DELETE", file_path(record_id, key), missing_ok=True)

    def publish(self, record_id: str) -> dict[str, Any]:
        return self.call("POST", f"/records/{record_id}/draft/actions/publish", repeatable=False)


class _Body:
    """A stored object as a request body of known length, read as it is sent."""

    def __init__(self, fh: BinaryIO, size: int | None):
        self._fh, self._size = fh, size

    def __len__(self) -> int:
        return self._size or 0

    def read(self, n: int = -1) -> bytes:
        return self._fh.read(n)

    def close(self) -> None:
        self._fh.close()


def _read(resp: requests.Response, cap: int = MAX_ANSWER_BYTES, truncate: bool = False) -> bytes:
    out = bytearray()
    for chunk in resp.iter_content(chunk_size=65536):
        out += chunk
        if len(out) > cap:
            if truncate:
                return bytes(out[:cap])
            raise TransientError(f"Zenodo's answer is larger than {cap} bytes; not read")
    return bytes(out)


def _json(data: bytes, method: str, path: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise TransientError(f"Zenodo answered {method} {path} with something that is not JSON") from None


def _message(resp: requests.Response) -> str:
    """Zenodo's error message and the fields it names, from its JSON error body."""
    text = _read(resp, 65536, truncate=True).decode("utf-8", "replace")
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:500] or resp.reason or ""
    if not isinstance(body, dict):
        return text.strip()[:500]
    parts = [str(body.get("message") or resp.reason or "")]
    for err in body.get("errors") or []:
        if isinstance(err, dict):
            messages = err.get("messages") or err.get("message") or []
            parts.append(f"{err.get('field', '?')}: {' '.join(map(str, messages)) if isinstance(messages, list) else messages}")
    return "; ".join(p for p in parts if p)[:1000]
