"""Which Host headers name this server: loopback, the public host, configured ones."""

from __future__ import annotations

import pytest

from klingmon.web import HostPolicy, url_host

POLICY = HostPolicy.of(["km.example.com", "*.corp.example", "2001:db8::7"])


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:18000",
        "LOCALHOST:1",
        "localhost.:8000",
        "127.0.0.1",
        "127.0.0.1:8000",
        "127.9.8.7:80",
        "[::1]",
        "[::1]:8000",
        "km.example.com",
        "KM.example.com:443",
        "a.corp.example",
        "a.b.corp.example:8443",
        "[2001:db8::7]:8000",
    ],
)
def test_our_names_pass(host):
    """Loopback names with any port, the configured names and their subdomains."""
    assert POLICY.allows(host)


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "rebind.attacker.example:18000",
        "localhost.attacker.example",
        "127.0.0.1.attacker.example",
        "km.example.com.attacker.example",
        "corp.example",
        "xcorp.example",
        "0.0.0.0:8000",
        "10.0.0.1",
        "[::2]:8000",
        "[::1",
        "user@localhost",
        "localhost:8000/evil",
        "::1",
        "local host",
    ],
)
def test_other_names_are_refused(host):
    """A rebinding attacker's name, lookalikes, wildcard addresses and junk."""
    assert not POLICY.allows(host)


def test_a_star_turns_the_check_off():
    """``*`` lets a proxy that checks Host itself pass everything through."""
    assert HostPolicy.of(["*"]).allows("anything.example")


def test_url_host_is_the_public_urls_name():
    """The public URL's host as a Host header carries it, without port or userinfo."""
    assert url_host("https://km.example.com:8443/base") == "km.example.com"
    assert url_host("http://u:p@[2001:db8::1]:80/") == "[2001:db8::1]"
    assert url_host("not a url") is None
