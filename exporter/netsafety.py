"""Outbound HTTP that cannot be pointed at internal addresses (SSRF protection).

`safe_session()` returns a requests.Session whose connections resolve the host name
themselves, refuse every address that is loopback, private, link-local, multicast,
reserved, unspecified or a cloud metadata endpoint (unless an allowlist opens it), and
connect to the very address they checked. The check happens at connect time, for every
new connection, so DNS rebinding (a name that resolves to a public address when checked
and to 127.0.0.1 when used) gains nothing. Environment proxies are ignored: a proxy would
make the connection on our behalf, past the check.

`request_following()` follows redirects by hand, re-checking the scheme of every hop (the
address is checked by the connection itself), with a bound on the number of hops.
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.timeout import _DEFAULT_TIMEOUT

from .errors import ExporterError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS over IPv6
    )
)
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
ALLOWED_SCHEMES = frozenset({"http", "https"})


class BlockedAddress(ExporterError):
    """The URL leads to an address Exporter refuses to connect to (internal, metadata...)."""

    def __init__(self, message: str, host: str | None = None, address: str | None = None):
        super().__init__(message)
        self.host = host
        self.address = address


class UnsafeURL(ExporterError):
    """The URL (or a redirect) uses a scheme other than http/https, or cannot be parsed."""


class UnsafeRedirect(UnsafeURL):
    """A redirect that would re-send the request's body to another origin (307/308); not followed."""

    def __init__(self, message: str, url: str):
        super().__init__(message)
        self.url = url


class TooManyRedirects(ExporterError):
    """More redirects than allowed; `url` is the last location reached."""

    def __init__(self, message: str, url: str):
        super().__init__(message)
        self.url = url


def blocked_reason(ip: IPAddress, allow: Iterable[Network] = ()) -> str | None:
    """Why `ip` is refused ("loopback", "private"...), or None when it may be used."""
    allow = tuple(allow)
    if any(ip.version == net.version and ip in net for net in allow):
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return blocked_reason(ip.ipv4_mapped, allow)
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    for attr, reason in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, attr):
            return reason
    if not ip.is_global:
        return "non-public"
    return None


def check_address(address: str, allow: Iterable[Network] = (), host: str | None = None) -> IPAddress:
    """Parse `address` and raise BlockedAddress if it is refused."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    reason = blocked_reason(ip, allow)
    if reason:
        name = f"{host} ({ip})" if host and host != str(ip) else str(ip)
        raise BlockedAddress(
            f"refusing to connect to {name}: {reason} address, not in the allowlist", host=host, address=str(ip)
        )
    return ip


def _connect_checked(conn: HTTPConnection, allow: tuple[Network, ...]) -> socket.socket:
    """Resolve, refuse blocked addresses, and connect to one that was checked."""
    host = conn._dns_host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, conn.port, 0, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    first_block: BlockedAddress | None = None
    last_error: OSError | None = None
    for family, socktype, proto, _canon, sockaddr in infos:
        try:
            check_address(sockaddr[0], allow, host=conn.host)
        except BlockedAddress as exc:
            first_block = first_block or exc
            continue
        sock = socket.socket(family, socktype, proto)
        try:
            for opt in conn.socket_options or ():
                sock.setsockopt(*opt)
            if conn.timeout is not _DEFAULT_TIMEOUT:
                sock.settimeout(conn.timeout)
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(sockaddr)
            check_address(sock.getpeername()[0], allow, host=conn.host)
            return sock
        except TimeoutError as exc:
            sock.close()
            raise ConnectTimeoutError(conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})") from exc
        except OSError as exc:
            sock.close()
            last_error = exc
        except BaseException:
            sock.close()
            raise
    if last_error is not None:
        raise NewConnectionError(conn, f"Failed to establish a new connection: {last_error}") from last_error
    if first_block is not None:
        raise first_block
    raise NewConnectionError(conn, f"Failed to establish a new connection: {host} has no address")


@dataclass(frozen=True)
class _Classes:
    http_pool: type
    https_pool: type


def _classes(allow: tuple[Network, ...], on_socket: Callable[[socket.socket], None] | None = None) -> _Classes:
    def connected(conn: HTTPConnection) -> socket.socket:
        sock = _connect_checked(conn, allow)
        if on_socket is not None:
            on_socket(sock)
        return sock

    class SafeHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return connected(self)

    class SafeHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return connected(self)

    class SafeHTTPConnectionPool(HTTPConnectionPool):
        ConnectionCls = SafeHTTPConnection

    class SafeHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = SafeHTTPSConnection

    return _Classes(SafeHTTPConnectionPool, SafeHTTPSConnectionPool)


class SafeAdapter(HTTPAdapter):
    """An HTTPAdapter whose every connection checks the address it connects to."""

    def __init__(self, allow_networks: Iterable[Network] = (), on_socket: Callable[[socket.socket], None] | None = None, **kwargs):
        self.allow_networks = tuple(allow_networks)
        self._safe = _classes(self.allow_networks, on_socket)
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": self._safe.http_pool, "https": self._safe.https_pool}

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        raise BlockedAddress(f"refusing to use proxy {proxy}: the proxy would connect past the address check")

    def __setstate__(self, state) -> None:
        self._safe = _classes(tuple(state.get("allow_networks", ())))
        super().__setstate__(state)


def safe_session(
    allow_networks: Iterable[Network] = (),
    user_agent: str | None = None,
    pool_maxsize: int = 10,
    on_socket: Callable[[socket.socket], None] | None = None,
) -> requests.Session:
    """A requests.Session that refuses internal addresses at connect time (see module doc);
    `on_socket` is told of every socket it connects (see Deadline)."""
    session = requests.Session()
    session.trust_env = False  # no environment proxies, no .netrc credentials
    refuse_cookies(session)
    for prefix in list(session.adapters):
        del session.adapters[prefix]
    adapter = SafeAdapter(allow_networks, on_socket, pool_connections=pool_maxsize, pool_maxsize=pool_maxsize)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if user_agent:
        session.headers["User-Agent"] = user_agent
    return session


class Deadline:
    """A bound on the whole of an exchange, however slowly the other end sends: requests'
    timeouts bound each read, so a server trickling a byte at a time holds a worker for as long
    as it likes. Pass `watch` as safe_session's on_socket; once `seconds` have passed, every
    socket it was told of is shut down, the blocked read returns, and `expired` is true.

        with Deadline(10) as deadline, safe_session(on_socket=deadline.watch) as http: ...
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self.expired:
                sock.shutdown(socket.SHUT_RDWR)
            self._sockets.append(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()


def refuse_cookies(session: requests.Session) -> None:
    """Keep no cookie a server sets: a cookie jar matches by host name, not by origin, and would
    hand one port's cookie to another (none of our clients needs a cookie)."""
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))


class TooLarge(ExporterError):
    """A remote body longer than the caller's cap; it was not read past the cap."""


def read_capped(resp: requests.Response, cap: int, what: str = "the answer") -> bytes:
    """A streamed response's body, refused (TooLarge) once its declared or read length passes
    `cap` bytes; closes the response either way."""
    try:
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise TooLarge(f"{what}: {int(declared)} bytes, larger than the limit of {cap}")
        body = bytearray()
        for chunk in resp.iter_content(65536):
            body += chunk
            if len(body) > cap:
                raise TooLarge(f"{what}: larger than the limit of {cap} bytes")
        return bytes(body)
    finally:
        resp.close()


def check_url(url: str) -> str:
    """Raise UnsafeURL unless `url` is an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise UnsafeURL(f"invalid URL {url!r}: {exc}") from None
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise UnsafeURL(f"invalid URL {url!r}: scheme {parts.scheme or '(none)'!r} is not http or https")
    if not parts.hostname:
        raise UnsafeURL(f"invalid URL {url!r}: no host")
    return url


CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding", "transfer-encoding"})
DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(scheme)


def same_origin(a: str, b: str) -> bool:
    """Whether two URLs share scheme, host and port (the default port filled in)."""
    return _origin(a) == _origin(b)


def _without_credentials(headers: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (headers or {}).items() if k.lower() not in CREDENTIAL_HEADERS}


@dataclass
class Followed:
    response: requests.Response
    url: str  # the final URL
    history: list[str] = field(default_factory=list)  # every URL requested, in order


def request_following(
    session: requests.Session, method: str, url: str, max_redirects: int = 5, **kwargs
) -> Followed:
    """Send a request and follow redirects by hand: every hop is checked and counted.

    303 (and 301/302) turn the method into GET without a body, as browsers do; 307/308 keep
    method and body, but only on the same origin: a 307/308 that would re-send a body to
    another scheme, host or port is not followed (UnsafeRedirect). Authorization, Cookie and
    Proxy-Authorization are dropped (request headers and the session's own) once a hop changes
    scheme, host or port. Raises UnsafeURL for a non-http(s) hop, BlockedAddress from the
    connection, and TooManyRedirects after `max_redirects` hops; any exception raised carries
    `history`, the URLs reached so far (the failing one last).
    """
    kwargs["allow_redirects"] = False
    history: list[str] = []
    for _hop in range(max_redirects + 1):
        history.append(url)
        try:
            check_url(url)
            resp = session.request(method, url, **kwargs)
        except Exception as exc:
            exc.history = history  # the hops reached before the failure (final URL last)
            raise
        location = resp.headers.get("Location")
        if resp.status_code not in REDIRECT_CODES or not location:
            return Followed(resp, url, history)
        resp.close()
        previous, url = url, urljoin(url, location)
        if not same_origin(previous, url):
            if resp.status_code in (307, 308) and any(kwargs.get(b) is not None for b in ("data", "json", "files")):
                history.append(url)
                exc = UnsafeRedirect(f"{previous} answered {resp.status_code} to another origin ({url}); the request's body is not sent there", url=url)
                exc.history = history
                raise exc
            kwargs["headers"] = _without_credentials(kwargs.get("headers"))
            session_credentials = [h for h in session.headers if h.lower() in CREDENTIAL_HEADERS]
            if session_credentials:
                kwargs["headers"] = {**{h: None for h in session_credentials}, **kwargs["headers"]}
        if (resp.status_code == 303 and method.upper() != "HEAD") or (resp.status_code in (301, 302) and method.upper() == "POST"):
            method = "GET"
            for body_arg in ("data", "json", "files"):
                kwargs.pop(body_arg, None)
            if kwargs.get("headers"):
                kwargs["headers"] = {k: v for k, v in kwargs["headers"].items() if k.lower() not in BODY_HEADERS}
    raise TooManyRedirects(f"more than {max_redirects} redirects; last location {url}", url=url)
