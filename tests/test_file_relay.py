"""The daemon's file relay: a tracker file reaches Re:amaze byte for byte through a
signed, expiring link on the daemon's listener, which nobody can forge, alter or use
after it expired; without a relay the copy names the file instead."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from e2e_support import Engineer, issue_for, messages, sandbox
from listener_support import *  # noqa: F403  (pytest fixtures)
from listener_support import free_port, wait_until

from syncer.app import Engine, run_all_once
from syncer.config import ConfigError, parse_config
from syncer.models import Attachment
from syncer.relay import FileRelay
from syncer.sandbox import sandbox_config

KEY = b"relay-tests-marker-key-000000001"
FILE = Attachment(name="crash.log", size=10,
                  url="http://redmine.sandbox/attachments/download/5/crash.log")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _relay(clock: Clock, key: bytes = KEY) -> FileRelay:
    return FileRelay(key, "https://sync.example.com/", timedelta(minutes=60), now=clock)


def _path(url: str) -> str:
    return httpx.URL(url).path


def test_a_link_resolves_to_its_file_until_it_expires() -> None:
    clock = Clock()
    relay = _relay(clock)
    linked = relay.link("redmine", FILE)
    assert linked.url is not None and linked.url.startswith("https://sync.example.com/files/")
    assert linked.url.endswith("/crash.log") and (linked.name, linked.size) == ("crash.log", 10)
    assert relay.resolve(_path(linked.url)) == ("redmine", Attachment(name="crash.log",
                                                                      url=FILE.url))
    clock.now += timedelta(minutes=59)
    assert relay.resolve(_path(linked.url)) is not None
    clock.now += timedelta(minutes=2)
    assert relay.resolve(_path(linked.url)) is None


def test_forged_altered_or_foreign_links_resolve_to_nothing() -> None:
    clock = Clock()
    relay = _relay(clock)
    url = relay.link("redmine", FILE).url
    assert url is not None
    path = _path(url)
    token = path.split("/")[2]
    payload, sig = token.split(".")
    other = relay.link("redmine", FILE.model_copy(update={
        "url": "http://redmine.sandbox/attachments/download/6/secret.pdf"})).url
    assert other is not None
    other_payload = _path(other).split("/")[2].split(".")[0]
    assert relay.resolve(path.replace(payload, other_payload)) is None  # someone else's file
    assert relay.resolve(path.replace(sig, "0" * len(sig))) is None
    assert relay.resolve(path.replace(f".{sig}", "")) is None
    assert _relay(clock, b"another-installation-key-0000001").resolve(path) is None
    assert relay.resolve("/files/garbage.0/x") is None and relay.resolve("/metrics") is None


def test_relay_url_without_a_listener_is_a_config_error_naming_the_key(
        tmp_path: Path) -> None:
    config = sandbox_config(f"sqlite:///{tmp_path / 'state.db'}")
    config["server"] = {"relay_url": "https://sync.example.com"}
    with pytest.raises(ConfigError, match="relay_url"):
        parse_config(config)


def test_the_daemon_relays_a_redmine_file_to_reamaze_byte_for_byte(
        tmp_path: Path, daemon_thread: Callable[[Engine], threading.Event]) -> None:
    """An engineer attaches a binary file to a Redmine note: the daemon's copy in
    Re:amaze carries it as an attachment Re:amaze fetched from the relay (same bytes), not
    a line; the link then refuses an altered token."""
    port = free_port()
    config = sandbox_config(f"sqlite:///{tmp_path / 'state.db'}")
    config["server"] = {"listen": f"127.0.0.1:{port}", "relay_url": f"http://127.0.0.1:{port}"}
    sb = sandbox(tmp_path, config=config)
    fetched: list[str] = []

    def fetch(url: str) -> bytes | None:  # Re:amaze's servers, fetching over real HTTP
        fetched.append(url)
        answer = httpx.get(url, timeout=30)
        return answer.content if answer.status_code == 200 else None
    sb.reamaze.fetch = fetch
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.",
                                       "carol@customer.example", tags=["bug"])
    engine = sb.engine()
    [first] = run_all_once(engine)
    assert first.ok
    issue_id = issue_for(engine, slug)
    dev = Engineer(sb)
    data = bytes(range(256)) * 20
    up = dev.http.post("/uploads.json", params={"filename": "core dump.bin"}, content=data,
                       headers={"Content-Type": "application/octet-stream"})
    assert up.status_code == 201, up.text
    dev.sim.clock.advance(2)
    put = dev.http.put(f"/issues/{issue_id}.json", json={"issue": {
        "notes": "Dump attached.",
        "uploads": [{"token": up.json()["upload"]["token"], "filename": "core dump.bin"}]}})
    assert put.status_code == 204, put.text

    daemon_thread(engine)
    wait_until(lambda: any("Dump attached." in m.body for m in messages(sb, slug)),
               "the note's copy in Re:amaze")
    [copy] = [m for m in messages(sb, slug) if "Dump attached." in m.body]
    assert "needs a Redmine login" not in copy.body
    [att] = copy.attachments
    assert att["file_file_name"].endswith("dump.bin")  # the simulator keeps it as in the URL
    assert att["file_file_size"] == len(data)
    assert sb.reamaze.hosted[att["url"]] == data
    [url] = fetched
    assert url.startswith(f"http://127.0.0.1:{port}/files/")
    assert sb.redmine.admin_key not in url
    sig = _path(url).split("/")[2].split(".")[1]
    tampered = url.replace(sig, ("1" if sig[0] == "0" else "0") + sig[1:])
    assert httpx.get(tampered, timeout=30).status_code == 404
