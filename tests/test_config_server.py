"""The `[server]` section: the daemon's HTTP listener is off unless `listen` is set, and
its settings are validated like every other key."""

from __future__ import annotations

from typing import Any

import pytest

from syncer.config import parse_config
from syncer.errors import ConfigError


def with_server(**server: Any) -> dict[str, Any]:
    return {
        "reamaze": {"brand": "acme", "login_email": "bot@acme.example"},
        "trackers": {"main": {"kind": "redmine", "base_url": "https://r.example",
                              "project": "web"}},
        "pairs": [{"name": "p", "tracker": "main"}],
        "server": server,
    }


def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value).splitlines()


def test_the_listener_is_off_by_default() -> None:
    """Without a [server] table, or without `listen` in it, nothing listens."""
    data = with_server()
    del data["server"]
    assert parse_config(data).server.address() is None
    assert parse_config(with_server()).server.address() is None
    assert parse_config(with_server()).server.stale_after_intervals == 3


@pytest.mark.parametrize(("listen", "address"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)),
    ("localhost:1", ("localhost", 1)),
    ("0.0.0.0:65535", ("0.0.0.0", 65535)),
    ("[::1]:9464", ("::1", 9464)),
])
def test_listen_addresses(listen: str, address: tuple[str, int]) -> None:
    """HOST:PORT, with an IPv6 address in brackets."""
    assert parse_config(with_server(listen=listen)).server.address() == address


@pytest.mark.parametrize(("listen", "why"), [
    ("9464", "expected HOST:PORT"),
    (":9464", "expected HOST:PORT"),
    ("127.0.0.1:", "expected HOST:PORT"),
    ("http://127.0.0.1:9464", "expected HOST:PORT"),
    ("::1:9464", "expected HOST:PORT"),
    ("127.0.0.1:0", "port 0 is not between 1 and 65535"),
    ("127.0.0.1:70000", "port 70000 is not between 1 and 65535"),
    ("[fe80::zz]:9464", "expected HOST:PORT"),
    ("[1:2:3]:9464", "'1:2:3' is not an IPv6 address"),
])
def test_bad_listen_addresses_are_config_errors(listen: str, why: str) -> None:
    """A listen address the daemon could not bind is refused at load, naming the key."""
    [line] = errors_of(with_server(listen=listen))
    assert line.startswith("[server] listen: ") and why in line, line


def test_server_settings_are_strict() -> None:
    """Unknown keys and a staleness of one interval or less are errors, reported together."""
    lines = errors_of(with_server(listen="127.0.0.1:9464", port=9464, stale_after_intervals=1))
    assert "[server] port: unknown key" in lines
    assert "[server] stale_after_intervals: Input should be greater than 1" in lines
