"""exporter.netsafety: internal addresses are refused at connect time, after every redirect."""

from __future__ import annotations

import ipaddress
import socket

import pytest
import requests

from exporter.errors import ExporterError
from exporter.netsafety import (
    BlockedAddress,
    TooManyRedirects,
    UnsafeRedirect,
    UnsafeURL,
    blocked_reason,
    request_following,
    safe_session,
)
from tests.http_servers import ScenarioServer

LOCAL = (ipaddress.ip_network("127.0.0.1/32"),)


@pytest.fixture(scope="module")
def server():
    srv = ScenarioServer().start()
    yield srv
    srv.stop()


@pytest.mark.parametrize(
    "address, reason",
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "private"),  # reserved space; Python files 240/4 under is_private too
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("::ffff:10.0.0.1", "private"),  # IPv4-mapped IPv6 is judged as the IPv4 address
    ],
)
def test_internal_addresses_are_refused(address, reason):
    assert blocked_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    assert blocked_reason(ipaddress.ip_address(address)) is None


def test_allowlist_opens_only_its_networks():
    assert blocked_reason(ipaddress.ip_address("127.0.0.1"), LOCAL) is None
    assert blocked_reason(ipaddress.ip_address("::ffff:127.0.0.1"), LOCAL) is None
    assert blocked_reason(ipaddress.ip_address("127.0.0.2"), LOCAL) == "loopback"
    assert blocked_reason(ipaddress.ip_address("169.254.169.254"), LOCAL) == "cloud metadata"


def test_loopback_refused_by_default_and_allowed_by_allowlist(server):
    path = "/data.csv?probe=refused-by-default"
    before = server.full_counts[path]
    with pytest.raises(BlockedAddress) as err:
        safe_session().get(server.url + path, timeout=5)
    assert isinstance(err.value, ExporterError)
    assert "loopback" in str(err.value) and err.value.address == "127.0.0.1"
    assert server.full_counts[path] == before  # refused before any byte was sent
    resp = safe_session(LOCAL).get(server.url + path, timeout=5)
    assert resp.status_code == 200 and resp.content == b"a,b\n1,2\n"
    assert server.full_counts[path] == before + 1  # the counter does see a request that gets through


def test_name_resolving_to_loopback_is_refused(server):
    with pytest.raises(BlockedAddress, match=r"localhost \(127\.0\.0\.1\)|localhost \(::1\)"):
        safe_session().get(f"http://localhost:{server.port}/data.csv", timeout=5)


def test_dns_rebinding_checked_at_connect_time(server, monkeypatch):
    """The name resolves to a public address when first asked, then to 127.0.0.1: the
    connection resolves for itself and checks the address it actually uses."""
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34", "127.0.0.1"])

    def rebinding(host, port, *args, **kwargs):
        if host == "rebind.example.test":
            ip = next(answers)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    first = socket.getaddrinfo("rebind.example.test", 80)  # what a pre-check would have seen
    assert blocked_reason(ipaddress.ip_address(first[0][4][0])) is None
    with pytest.raises(BlockedAddress, match="loopback"):
        safe_session().get(f"http://rebind.example.test:{server.port}/data.csv", timeout=5)


def test_connects_to_the_checked_address_keeping_the_host_header(server, monkeypatch):
    real = socket.getaddrinfo

    def fake_dns(host, port, *args, **kwargs):
        if host == "data.example.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    resp = safe_session(LOCAL, user_agent="probe/1").get(f"http://data.example.test:{server.port}/data.csv?x=host", timeout=5)
    assert resp.status_code == 200
    path, headers = next((p, h) for p, h in reversed(server.requests) if p == "/data.csv")
    assert headers["Host"] == f"data.example.test:{server.port}"
    assert headers["User-Agent"] == "probe/1"


def test_redirect_to_internal_address_is_refused(server):
    session = safe_session(LOCAL)
    for target in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", f"http://[::1]:{server.port}/data.csv"):
        with pytest.raises(BlockedAddress) as err:
            request_following(session, "GET", f"{server.url}/redirect?to={target}", max_redirects=5, timeout=5)
        assert err.value.history[-1] == target
        assert err.value.history[0].startswith(server.url)


def test_redirect_to_other_scheme_is_refused(server):
    with pytest.raises(UnsafeURL, match="file"):
        request_following(safe_session(LOCAL), "GET", f"{server.url}/redirect?to=file:///etc/passwd", timeout=5)


def test_redirects_are_bounded(server):
    with pytest.raises(TooManyRedirects) as err:
        request_following(safe_session(LOCAL), "GET", f"{server.url}/redirect?n=4", max_redirects=2, timeout=5)
    assert "/redirect?n=" in err.value.url
    ok = request_following(safe_session(LOCAL), "GET", f"{server.url}/redirect?n=2", max_redirects=2, timeout=5)
    assert ok.response.status_code == 200 and ok.url == f"{server.url}/data.csv" and len(ok.history) == 3


def test_environment_proxies_are_ignored(server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://10.255.255.1:3128")
    monkeypatch.setenv("http_proxy", "http://10.255.255.1:3128")
    resp = safe_session(LOCAL).get(server.url + "/data.csv", timeout=5)
    assert resp.status_code == 200


def test_only_http_and_https_are_mounted():
    with pytest.raises(requests.exceptions.InvalidSchema):
        safe_session().get("ftp://example.com/file", timeout=5)


@pytest.fixture
def other_server():
    srv = ScenarioServer().start()
    yield srv
    srv.stop()


SECRETS = {"Authorization": "portal-token", "Cookie": "session=abc", "Proxy-Authorization": "Basic eA=="}


def _seen(srv: ScenarioServer, path: str) -> dict[str, str]:
    return next(h for p, h in reversed(srv.requests) if p == path)


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_credentials_are_not_sent_to_another_origin(server, other_server, code):
    """A redirect to another port (same host, so a different origin) gets no credentials;
    neither does one given on the session itself."""
    session = safe_session(LOCAL)
    session.headers["Authorization"] = "session-token"
    target = f"{other_server.url}/data.csv?code={code}"
    followed = request_following(session, "GET", f"{server.url}/redirect?code={code}&to={target}", headers=SECRETS, timeout=5)
    assert followed.response.status_code == 200 and followed.url == target
    first, second = _seen(server, "/redirect"), _seen(other_server, "/data.csv")
    assert first["Authorization"] == "portal-token" and first["Cookie"] == "session=abc"
    assert not {"Authorization", "Cookie", "Proxy-Authorization"} & set(second)


def test_same_origin_redirect_keeps_credentials(server):
    followed = request_following(safe_session(LOCAL), "GET", f"{server.url}/redirect?n=2&to=/data.csv?same=1", headers=SECRETS, timeout=5)
    assert followed.response.status_code == 200
    final = _seen(server, "/data.csv")
    assert final["Authorization"] == "portal-token" and final["Proxy-Authorization"] == "Basic eA=="


@pytest.mark.parametrize("code", [307, 308])
def test_307_308_to_another_origin_sends_neither_body_nor_token(server, other_server, code):
    target = f"{other_server.url}/data.csv?post={code}"
    with pytest.raises(UnsafeRedirect, match="another origin") as err:
        request_following(safe_session(LOCAL), "POST", f"{server.url}/redirect?code={code}&to={target}", headers={"Authorization": "t"}, json={"a": 1}, timeout=5)
    assert err.value.url == target and err.value.history[-1] == target
    assert server.posts[-1][2] == b'{"a": 1}' and other_server.posts == [] and other_server.requests == []


def test_307_on_the_same_origin_keeps_method_body_and_token(server):
    request_following(safe_session(LOCAL), "POST", f"{server.url}/redirect?code=307&to=/data.csv?same307=1", headers={"Authorization": "t"}, json={"a": 1}, timeout=5)
    (first, _h1, body1), (second, headers, body2) = server.posts[-2:]
    assert (first, second) == ("/redirect", "/data.csv") and body1 == body2 == b'{"a": 1}' and headers["Authorization"] == "t"


def test_a_cookie_set_by_one_port_is_not_sent_to_another(server, other_server):
    """A cookie jar matches by host name only; safe sessions keep no cookie at all."""
    session = safe_session(LOCAL)
    target = f"{other_server.url}/data.csv?cookie-jar=1"
    followed = request_following(session, "GET", f"{server.url}/redirect?cookie=sid=secret&to={target}", timeout=5)
    assert followed.response.status_code == 200
    assert "Cookie" not in _seen(other_server, "/data.csv") and len(session.cookies) == 0


@pytest.mark.parametrize("code", [301, 302, 303])
def test_post_becomes_get_without_body_on_301_302_303(server, code):
    posts_before = len(server.posts)
    followed = request_following(safe_session(LOCAL), "POST", f"{server.url}/redirect?code={code}&to=/data.csv?after={code}", data=b"secret=1", timeout=5)
    assert followed.response.status_code == 200
    assert [p for p, _h, _b in server.posts[posts_before:]] == ["/redirect"]  # only the first hop was a POST
    final = _seen(server, "/data.csv")
    assert "Content-Length" not in final and "Content-Type" not in final
