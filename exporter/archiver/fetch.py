"""The safe streaming downloader: one GET per attempt, headers before body, bounded retries.

`fetch()` knows HTTP and nothing of the database: it sends a conditional request, follows
redirects by hand (every hop re-checked by exporter.netsafety), decides from the headers
whether to read the body at all, streams the body to a sink in chunks while enforcing the
size and time limits, and retries timeouts, connection errors, 5xx and 429 at most
`attempts` times (tenacity: waits double with jitter, longer when Retry-After asks; each
attempt passes the host's slot gate again). Its outcome carries a CKAN status id and reason.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from queue import Queue
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import requests
import tenacity
import urllib3

from ..errors import short_message
from ..netsafety import BlockedAddress, TooManyRedirects, UnsafeURL, check_url, request_following
from ..retrying import retry_after
from ..storage.base import Hasher, ObjectInfo

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504}) | frozenset(range(505, 600))


@dataclass(frozen=True)
class FetchOptions:
    max_bytes: int = 1 << 30
    connect_timeout: float = 10
    read_timeout: float = 30
    total_timeout: float = 3600
    max_redirects: int = 5
    attempts: int = MAX_ATTEMPTS
    backoff: float = 2.0  # seconds; doubles per attempt, with jitter
    retry_after_max: float = 120
    chunk_bytes: int = 1 << 20
    skip_content_types: tuple[str, ...] = ("text/html", "application/xhtml+xml")
    link_check_only: bool = False

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> FetchOptions:
        values = dict(
            max_bytes=settings.archiver_max_bytes,
            connect_timeout=settings.archiver_connect_timeout,
            read_timeout=settings.archiver_read_timeout,
            total_timeout=settings.archiver_total_timeout,
            max_redirects=settings.archiver_max_redirects,
            backoff=settings.archiver_retry_backoff_ms / 1000,
            retry_after_max=settings.archiver_retry_after_max,
            chunk_bytes=settings.archiver_chunk_bytes,
            skip_content_types=parse_types(settings.archiver_skip_content_types),
        )
        values.update(overrides)
        return cls(**values)


def parse_types(raw: str) -> tuple[str, ...]:
    return tuple(t.strip().lower() for t in raw.split(",") if t.strip())


class Sink(Protocol):
    """Where a body goes: `open(filename, mimetype)` gives a context manager yielding a
    writable handle; after the block, `info` describes what was stored."""

    def open(self, filename: str, mimetype: str | None) -> AbstractContextManager[Any]: ...


@dataclass
class FetchResult:
    status_id: int
    reason: str | None = None
    url: str = ""
    final_url: str | None = None
    http_status: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    mimetype: str | None = None
    size: int | None = None
    filename: str | None = None
    stored: ObjectInfo | None = None
    headers: dict[str, str] = field(default_factory=dict)
    attempts: int = 0

    @property
    def redirected(self) -> str | None:
        return self.final_url if self.final_url and self.final_url != self.url else None


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None = None, final_url: str | None = None, http_status: int | None = None):
        super().__init__(reason)
        self.reason, self.wait, self.final_url, self.http_status = reason, wait, final_url, http_status


class _DownloadError(Exception):
    """The response started but its body could not be read (status 12)."""


class _TooBig(Exception):
    def __init__(self, seen: int):
        super().__init__(f"{seen} bytes")
        self.seen = seen


def content_length(value: str | None) -> int | None:
    """The Content-Length, or None when missing, non-numeric or repeated with different values."""
    if not value:
        return None
    parts = {p.strip() for p in value.split(",")}
    if len(parts) != 1:
        return None
    (only,) = parts
    return int(only) if only.isdigit() else None


_CD_STAR = re.compile(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", re.I)
_CD_PLAIN = re.compile(r'filename\s*=\s*("([^"]*)"|[^;]+)', re.I)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str | None, default: str = "resource") -> str:
    """A file name that is safe in a storage key: no path, no odd characters, bounded length."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip("._-")
    if not name:
        return default
    if len(name) > 120:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 120 - len(ext) - 1] + "." + ext) if dot and len(ext) <= 10 else name[:120]
    return name


def filename_for(url: str, disposition: str | None) -> str:
    """From Content-Disposition when given, else the last segment of the URL path."""
    if disposition:
        m = _CD_STAR.search(disposition)
        if m:
            try:
                return safe_filename(unquote(m.group(2).strip(), encoding=m.group(1) or "utf-8"))
            except LookupError:
                pass
        m = _CD_PLAIN.search(disposition)
        if m:
            return safe_filename((m.group(2) if m.group(2) is not None else m.group(1)).strip())
    return safe_filename(unquote(urlsplit(url).path))


def mimetype_of(header: str | None) -> str | None:
    return header.split(";", 1)[0].strip().lower() or None if header else None


class ParallelHasher(Hasher):
    """md5 and sha256 on two threads (hashlib releases the GIL) once a body passes
    `inline_bytes`, so hashing keeps up with the network on big files; small bodies (most of a
    portal) are hashed inline, without starting threads. Chunks must be immutable `bytes`;
    reading md5/sha256 waits for both."""

    INLINE_BYTES = 4 * 1024 * 1024

    def __init__(self, inline_bytes: int = INLINE_BYTES) -> None:
        super().__init__()
        self.inline_bytes = inline_bytes
        self._queues: list[Queue] = []
        self._threads: list[threading.Thread] = []
        self._done = False

    def _start(self) -> None:
        self._queues = [Queue(maxsize=8), Queue(maxsize=8)]
        self._threads = [
            threading.Thread(target=self._work, args=(q, h), daemon=True, name=f"hash-{n}")
            for q, h, n in zip(self._queues, (self._md5, self._sha256), ("md5", "sha256"), strict=True)
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _work(queue: Queue, h) -> None:
        while (chunk := queue.get()) is not None:
            h.update(chunk)

    def update(self, chunk: bytes) -> None:
        chunk = bytes(chunk)
        self.size += len(chunk)
        if not self._threads and self.size <= self.inline_bytes:
            self._md5.update(chunk)
            self._sha256.update(chunk)
            return
        if not self._threads:
            self._start()
        for q in self._queues:
            q.put(chunk)

    def finish(self) -> None:
        if not self._done:
            self._done = True
            for q in self._queues:
                q.put(None)
            for t in self._threads:
                t.join()

    @property
    def md5(self) -> str:
        self.finish()
        return self._md5.hexdigest()

    @property
    def sha256(self) -> str:
        self.finish()
        return self._sha256.hexdigest()


def _chunks(resp: requests.Response, size: int, deadline: float, total_timeout: float) -> Iterator[bytes]:
    """Body chunks as they arrive (read1: a slow sender cannot hold a chunk back past the deadline)."""
    raw = resp.raw
    while True:
        if time.monotonic() > deadline:
            raise _DownloadError(f"Download took longer than the limit of {total_timeout:g}s")
        chunk = raw.read1(size, decode_content=True)
        if not chunk:
            _reusable(resp)
            return
        yield chunk


DRAIN_BYTES = 64 * 1024  # a short body left unread is read, so its connection can be reused


def _reusable(resp: requests.Response) -> None:
    """Give the connection of a response read to its end back to the pool (requests would
    close it: it counts a body read through `raw` as not consumed)."""
    resp._content_consumed = True
    resp.raw.release_conn()


def _drained(resp: requests.Response) -> None:
    """Read what little is left of a body we do not keep, so the connection stays open."""
    try:
        declared = content_length(resp.headers.get("Content-Length"))
        if resp.status_code == 304 or resp.request.method == "HEAD" or (declared is not None and declared <= DRAIN_BYTES):
            resp.raw.read(DRAIN_BYTES + 1)  # to the end of the body (none for a 304), which http.client must see
            _reusable(resp)
    except Exception:  # a broken body: let the response close its connection
        return


def fetch(
    session: requests.Session,
    url: str,
    options: FetchOptions,
    sink: Sink | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
    before_attempt: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Check or download `url` (see module doc). With no sink, or link_check_only, no body is read."""
    result = FetchResult(status_id=0, url=url)
    url = url.strip()  # as browsers (and CKAN's archiver) do
    problem = url_problem(url)
    if problem is None:
        try:
            check_url(url)
        except UnsafeURL as exc:
            problem = str(exc)
    if problem is not None:
        result.status_id, result.reason = 10, problem
        return result
    headers = conditional_headers(etag, last_modified)
    attempts = max(1, min(options.attempts, MAX_ATTEMPTS))
    # backoff * 2**(n-1) * uniform(0.5, 1.5): half of it fixed, half full jitter
    backoff = tenacity.wait_exponential(multiplier=options.backoff / 2) + tenacity.wait_random_exponential(multiplier=options.backoff)

    def attempt() -> FetchResult:
        result.attempts += 1
        if before_attempt is not None:
            before_attempt()  # the host's slot and delay: every attempt is a request to it
        try:
            return _attempt(session, url, options, sink, headers, result)
        except _Retry as exc:
            result.status_id, result.reason, result.http_status = 12, exc.reason, exc.http_status
            result.final_url = exc.final_url or result.final_url
            raise

    try:
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts), retry=tenacity.retry_if_exception_type(_Retry), sleep=sleep, reraise=True,
            wait=lambda state: max(backoff(state), state.outcome.exception().wait or 0),  # or longer, if Retry-After asks
            before_sleep=lambda state: log.info("archiver: %s: %s; retrying in %.2fs", url, result.reason, state.upcoming_sleep),
        )(attempt)
    except _Retry:
        result.status_id = 12  # CKAN's "Download error", the attempts are in result.attempts
        return result


def conditional_headers(etag: str | None, last_modified: str | None) -> dict[str, str]:
    """Request headers that let the server answer 304 Not Modified for what we hold."""
    headers = {"Accept": "*/*", "Accept-Encoding": "identity"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


def _attempt(
    session: requests.Session, url: str, options: FetchOptions, sink: Sink | None, headers: dict[str, str], result: FetchResult
) -> FetchResult:
    started = time.monotonic()
    deadline = started + options.total_timeout
    try:
        followed = request_following(
            session, "GET", url, max_redirects=options.max_redirects, headers=headers, stream=True,
            timeout=(options.connect_timeout, options.read_timeout),
        )
    except Exception as exc:
        history = getattr(exc, "history", None)
        if history:
            result.final_url = history[-1]
        return _request_failed(exc, options, result)
    return _response(followed, options, sink, deadline, result)


def _request_failed(exc: Exception, options: FetchOptions, result: FetchResult) -> FetchResult:
    """Map an error before any response to a status, or raise _Retry for a transient one."""
    if isinstance(exc, (UnsafeURL, BlockedAddress)):
        result.status_id, result.reason = 10, str(exc)
    elif isinstance(exc, TooManyRedirects):
        result.status_id, result.reason, result.final_url = 12, "Too many redirects", exc.url
    elif isinstance(exc, requests.exceptions.InvalidHeader):
        result.status_id, result.reason = 12, f"Invalid HTTP response: {exc}"
    elif isinstance(exc, requests.exceptions.Timeout):
        timeout = options.connect_timeout if isinstance(exc, requests.exceptions.ConnectTimeout) else options.read_timeout
        raise _Retry(f"Connection timed out after {timeout:g}s", final_url=result.final_url) from None
    elif isinstance(exc, requests.exceptions.ConnectionError):
        raise _Retry(f"Connection error: {short_message(exc)}", final_url=result.final_url) from None
    elif isinstance(exc, requests.exceptions.RequestException):
        result.status_id, result.reason = 12, f"Error downloading: {short_message(exc)}"
    else:
        raise exc
    return result


def _response(followed, options: FetchOptions, sink: Sink | None, deadline: float, result: FetchResult) -> FetchResult:
    resp = followed.response
    with resp:
        result.final_url = followed.url
        result.http_status = resp.status_code
        result.headers = {k.lower(): v for k, v in resp.headers.items()}
        if resp.status_code == 304:
            result.status_id, result.reason = 1, None
            result.etag = resp.headers.get("ETag")
            result.last_modified = resp.headers.get("Last-Modified")
            _drained(resp)
            return result
        if resp.status_code in RETRY_STATUSES:
            wait = retry_after(resp.headers.get("Retry-After"), options.retry_after_max)
            _drained(resp)
            raise _Retry(f"Server reported status error: {resp.status_code} {resp.reason}", wait=wait, final_url=followed.url, http_status=resp.status_code)
        if not 200 <= resp.status_code < 300:
            result.status_id, result.reason = 12, f"Server reported status error: {resp.status_code} {resp.reason}"
            _drained(resp)
            return result

        result.etag = resp.headers.get("ETag")
        result.last_modified = resp.headers.get("Last-Modified")
        result.mimetype = mimetype_of(resp.headers.get("Content-Type"))
        declared = content_length(resp.headers.get("Content-Length"))
        result.size = declared
        result.filename = filename_for(followed.url, resp.headers.get("Content-Disposition"))
        if declared is not None and declared > options.max_bytes:
            result.status_id = 21
            result.reason = too_large(declared, options.max_bytes)
            return result
        if result.mimetype and result.mimetype in options.skip_content_types:
            result.status_id = 21
            result.reason = f"Content type {result.mimetype} is a web page, not data: recorded, not stored"
            return result
        if sink is None or options.link_check_only:
            result.status_id, result.reason = 0, "Link checked (link-check-only mode): reachable, nothing stored"
            return result
        return _download(resp, options, sink, deadline, result)


ALLOWED_SCHEMES = ("http", "https")
API_ERROR_SAMPLE = 250  # bytes of a body looked at for an API's error report, as CKAN's archiver does
API_ERROR_MARKS = (b"<ServiceExceptionReport", b"<ows:ExceptionReport")
MIN_BYTES = 2


def url_problem(url: str) -> str | None:
    """What is wrong with a URL, in the words CKAN's archiver uses (status 10), or None."""
    try:
        parsed = urllib3.util.parse_url(url)
    except urllib3.exceptions.LocationParseError as exc:
        return f"URL parsing failure: {exc}"
    if not parsed.scheme or parsed.scheme.lower() not in ALLOWED_SCHEMES:
        return f"Invalid url scheme. Please use one of: {' '.join(ALLOWED_SCHEMES)}"
    if not parsed.host:
        return "URL parsing failure - did not find a host name"
    return None


def too_large(size: int, limit: int) -> str:
    return f"Content-length {size} exceeds maximum allowed value {limit}"


def is_api_error(sample: bytes) -> bool:
    """A WMS/WFS-style error report in a 200 answer (CKAN's `response_is_an_api_error`)."""
    return any(mark in sample[:API_ERROR_SAMPLE] for mark in API_ERROR_MARKS)


class _ApiError(Exception):
    def __init__(self, sample: bytes):
        super().__init__("API error message")
        self.sample = sample


class _Empty(Exception):
    def __init__(self, seen: int):
        super().__init__(f"{seen} bytes")
        self.seen = seen


class _SinkError(Exception):
    """Storing the body failed (status 23: a system error, not the resource's fault)."""


def _download(resp: requests.Response, options: FetchOptions, sink: Sink, deadline: float, result: FetchResult) -> FetchResult:
    try:
        try:
            opened = sink.open(result.filename or "resource", result.mimetype)
            handle = opened.__enter__()
        except Exception as exc:
            raise _SinkError(exc) from exc
        hasher = None
        try:
            if hasattr(handle, "hasher"):
                hasher = handle.hasher = ParallelHasher()
            seen = 0
            head = b""
            for chunk in _chunks(resp, options.chunk_bytes, deadline, options.total_timeout):
                seen += len(chunk)
                if len(head) < API_ERROR_SAMPLE:
                    head += chunk[: API_ERROR_SAMPLE - len(head)]
                    if len(head) >= API_ERROR_SAMPLE and is_api_error(head):
                        raise _ApiError(head)
                if seen > options.max_bytes:
                    raise _TooBig(seen)
                try:
                    handle.write(chunk)
                except Exception as exc:
                    raise _SinkError(exc) from exc
            if len(head) < API_ERROR_SAMPLE and is_api_error(head):
                raise _ApiError(head)
            if seen < MIN_BYTES:  # nothing (or one byte) is a broken download, not data
                raise _Empty(seen)
        except BaseException as exc:
            if hasher is not None:
                hasher.finish()
            opened.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if hasher is not None:
            hasher.finish()
        try:
            opened.__exit__(None, None, None)
        except Exception as exc:
            raise _SinkError(exc) from exc
    except _TooBig as exc:
        result.status_id, result.size = 21, None
        result.reason = too_large(exc.seen, options.max_bytes)
        return result
    except _DownloadError as exc:
        result.status_id, result.reason = 12, str(exc)
        return result
    except _ApiError as exc:
        result.status_id, result.size = 12, None
        result.reason = f"Server content contained an API error message: {exc.sample.decode('utf-8', 'replace')[:250]}"
        return result
    except _Empty as exc:
        result.status_id, result.size = 12, exc.seen
        result.reason = f"Content-length after streaming was {exc.seen}"
        return result
    except _SinkError as exc:
        result.status_id, result.reason = 23, f"System error while storing the download: {type(exc.__cause__).__name__}: {exc.__cause__}"
        return result
    except (requests.exceptions.RequestException, OSError, _urllib3_errors()) as exc:
        result.status_id, result.reason = 12, f"Error downloading: {short_message(exc)}"
        return result
    result.stored = sink.info
    result.size = sink.info.size
    result.status_id, result.reason = 0, None
    return result


def _urllib3_errors() -> type[Exception]:
    from urllib3.exceptions import HTTPError

    return HTTPError
