"""Where `exporter sync` reads a dump from: an http(s) URL of the dump's folder, or s3://bucket/prefix.

Both count the HTTP requests they make and ask for LATEST.json conditionally (If-None-Match),
so a run with nothing new costs one request answered 304.
"""

from __future__ import annotations

import threading
from typing import BinaryIO, Protocol
from urllib.parse import quote, urlsplit

from ..errors import ExporterError, short_message
from ..netsafety import TooLarge, read_capped, refuse_cookies, request_following, same_origin
from . import layout

CHUNK = 1024 * 1024
MAX_LATEST = 1 << 20  # LATEST.json is a few hundred bytes; a larger one is not read
MAX_DOCUMENT = 64 << 20  # a manifest or a snapshot lists parts; a larger one is not read
MAX_REDIRECTS = 5
RETRY_AFTER_MAX = 60.0  # a longer Retry-After is waited for only this long


class SyncError(ExporterError):
    """The sync stopped; the mirror is as it was after the last complete change set."""


class Missing(SyncError):
    """The dump has no object at this key (pruned meanwhile, or never written)."""


class Source(Protocol):
    requests: int

    def latest(self, etag: str | None) -> tuple[bytes, str | None] | None:
        """LATEST.json's bytes and etag, or None when it still has `etag` (304)."""

    def get(self, key: str) -> bytes:
        """A small object (a manifest) whole."""

    def download(self, key: str, fh: BinaryIO, limit: int) -> None:
        """Stream an object into `fh`, at most `limit` bytes (more is an error)."""

    def close(self) -> None: ...


def _capped_retry():
    from urllib3.util.retry import Retry

    class CappedRetry(Retry):
        """urllib3's retries of 429 and 5xx, waiting as Retry-After asks, but never longer than RETRY_AFTER_MAX."""

        def get_retry_after(self, response):
            wait = super().get_retry_after(response)
            return None if wait is None else min(wait, RETRY_AFTER_MAX)

    return CappedRetry(total=3, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504), allowed_methods=("GET",))



class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0

    def count(self, *_args, **_kwargs) -> None:
        with self._lock:
            self.requests += 1


class HttpSource:
    """A dump served over HTTP (e.g. Exporter's /public/dumps/<agency>/), through one pooled session.

    Redirects are followed by exporter.netsafety.request_following, so credentials (user:password
    in the URL, S3's signature) never reach another scheme, host or port; no cookie is kept; a
    LATEST.json longer than MAX_LATEST or a manifest longer than MAX_DOCUMENT is refused, not read."""

    def __init__(self, url: str, timeout: tuple[float, float] = (10, 60), pool: int = 16):
        import requests
        from requests.adapters import HTTPAdapter

        self.base = url.rstrip("/") + "/"
        self.timeout = timeout
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=_capped_retry())
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = "exporter-sync/1"
        refuse_cookies(self.session)
        self._counter = _Counter()
        self.session.hooks["response"].append(self._counter.count)
        self._errors = requests.RequestException

    @property
    def requests(self) -> int:
        return self._counter.requests

    def _get(self, key: str, **kwargs):
        try:
            response = request_following(self.session, "GET", self.base + key, max_redirects=MAX_REDIRECTS, timeout=self.timeout, **kwargs).response
        except (self._errors, ExporterError) as exc:
            raise SyncError(f"{self.base + key}: {short_message(exc)}") from None
        if response.status_code == 404:
            response.close()
            raise Missing(f"{self.base + key}: not found (404)")
        if response.status_code not in (200, 304):
            response.close()
            raise SyncError(f"{self.base + key}: HTTP {response.status_code}")
        return response

    def latest(self, etag: str | None) -> tuple[bytes, str | None] | None:
        response = self._get(layout.LATEST, headers={"If-None-Match": etag} if etag else {}, stream=True)
        if response.status_code == 304:
            response.close()
            return None
        return self._small(layout.LATEST, response, MAX_LATEST), response.headers.get("ETag")

    def get(self, key: str) -> bytes:
        return self._small(key, self._get(key, stream=True), MAX_DOCUMENT)

    def _small(self, key: str, response, cap: int) -> bytes:
        """A small document whole, refused beyond `cap` bytes (a hostile or broken server cannot fill the memory)."""
        try:
            return read_capped(response, cap, self.base + key)
        except TooLarge as exc:
            raise SyncError(str(exc)) from None
        except self._errors as exc:
            raise SyncError(f"{self.base + key}: the download broke off: {exc}") from None

    def download(self, key: str, fh: BinaryIO, limit: int) -> None:
        with self._get(key, stream=True) as response:
            got = 0
            try:
                for chunk in response.iter_content(CHUNK):
                    got += len(chunk)
                    if got > limit:
                        raise SyncError(f"{self.base + key}: longer than the manifest says ({limit} bytes)")
                    fh.write(chunk)
            except self._errors as exc:
                raise SyncError(f"{self.base + key}: the download broke off: {short_message(exc)}") from None

    def close(self) -> None:
        self.session.close()


class S3Source(HttpSource):
    """A dump in an S3 bucket (s3://bucket/prefix, the prefix being the dump's folder).

    Plain HTTP GETs signed with SigV4 (botocore's signer and credential chain: the usual
    AWS_* settings, config files, roles), through the same pooled session as HttpSource:
    without a service model to load, a run with nothing new starts and ends in a blink."""

    def __init__(self, url: str, endpoint_url: str | None = None, pool: int = 16):
        import botocore.session
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest

        parts = urlsplit(url)
        bucket, prefix = parts.netloc, parts.path.strip("/")
        session = botocore.session.get_session()
        region = session.get_config_variable("region") or "us-east-1"
        if endpoint_url:
            base = f"{endpoint_url.rstrip('/')}/{bucket}/"
        else:
            base = f"https://{bucket}.s3.{region}.amazonaws.com/"
        super().__init__(base + (quote(prefix, safe="/~") + "/" if prefix else ""), pool=pool)
        credentials = session.get_credentials()
        origin = self.base

        def sign(request):
            if credentials is None:
                return request  # a public bucket
            if not same_origin(request.url, origin):
                return request  # a redirect elsewhere: never signed, so no credential goes there
            signed = AWSRequest(method=request.method, url=request.url, headers={k: v for k, v in request.headers.items() if k.lower() == "if-none-match"})
            S3SigV4Auth(credentials.get_frozen_credentials(), "s3", region).add_auth(signed)
            for name in ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256", "X-Amz-Security-Token"):
                if name in signed.headers:
                    request.headers[name] = signed.headers[name]
            return request

        self.session.auth = sign


def open_source(url: str, endpoint_url: str | None = None, pool: int = 16) -> Source:
    scheme = urlsplit(url).scheme
    if scheme in ("http", "https"):
        return HttpSource(url, pool=pool)
    if scheme == "s3":
        return S3Source(url, endpoint_url, pool=pool)
    raise SyncError(f"{url}: SOURCE must be an http(s):// URL of a dump's folder or s3://bucket/prefix")
