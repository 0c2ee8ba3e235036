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
    with pytest.raises(BlockedAddress) as err:
        safe_session().get(server.url + "/data.csv", timeout=5)
    assert isinstance(err.value, ExporterError)
    assert "loopback" in str(err.value) and err.value.address == "127.0.0.1"
    before = server.counts["/data.csv"]
    assert server.counts["/data.csv"] == before  # refused before any byte was sent
    resp = safe_session(LOCAL).get(server.url + "/data.csv", timeout=5)
    assert resp.status_code == 200 and resp.content == b"a,b\n1,2\n"


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
