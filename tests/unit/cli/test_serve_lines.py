"""What ``klingmon serve`` prints at start and which Host names it answers to."""

from __future__ import annotations

import dataclasses

from klingmon.cli._serve import _hosts, _Options, start_lines

OPTIONS = _Options(
    host="127.0.0.1",
    port=8000,
    engine=True,
    confirm=True,
    hook_command=None,
    hook_env=(),
    forward_url=None,
    forward_secret=None,
    notify=(),
    token=None,
)


def test_three_lines_name_dashboard_callbacks_and_metrics():
    """One line each; the public URL's userinfo never shows."""
    lines = start_lines(OPTIONS, "https://user:pw@km.example.com/hooks/")
    assert lines == [  # on loopback: no line about Host names
        "Dashboard:  http://127.0.0.1:8000/",
        "Callbacks:  https://km.example.com/hooks/callbacks/kling/<task token>",
        "Metrics:    http://127.0.0.1:8000/metrics",
    ]


def test_without_a_public_url_the_callback_line_says_why():
    """No public URL: no callbacks, and the line says tasks are polled."""
    wide = dataclasses.replace(OPTIONS, host="::", token="t0k3n-secret")
    lines = start_lines(wide, None)
    assert lines[0] == "Dashboard:  http://[::1]:8000/"
    assert lines[1].startswith("Callbacks:  none (no --public-url")
    assert lines[2] == "Metrics:    http://[::1]:8000/metrics (Bearer token)"
    assert lines[3].startswith("Hosts:      loopback names")  # off loopback only
    assert "t0k3n-secret" not in "".join(lines)


def test_hosts_are_the_configured_the_public_and_the_bound_one():
    """A wildcard bind adds no name; a concrete address does."""
    public = "https://km.example.com:8443"
    wildcard = "0.0.0.0"  # noqa: S104 - a value under test, nothing binds
    assert _hosts(("a.example",), public, wildcard) == ["a.example", "km.example.com"]
    assert _hosts((), None, "192.168.1.5") == ["192.168.1.5"]
