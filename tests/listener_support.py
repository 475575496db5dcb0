"""Helpers for tests of the daemon's listener: a free loopback port, a scraper speaking
real HTTP to it, and a fixture running `run_daemon` in a thread until the test ends."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncer.app import Engine
from syncer.daemon import run_daemon

__all__ = ["Scraper", "daemon_thread", "free_port", "wait_until"]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition``; a listener not up yet (connection refused) is "not yet"."""
    deadline = time.monotonic() + 60  # a bound against hanging, not a measurement
    while True:
        try:
            if condition():
                return
        except httpx.ConnectError:
            pass
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


class Scraper:
    def __init__(self, port: int) -> None:
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def samples(self) -> Samples:
        response = self.http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(response.text)
                for s in family.samples}

    def value(self, name: str, **labels: str) -> float:
        return self.samples().get((name, frozenset(labels.items())), 0.0)

    def ready(self) -> tuple[int, dict[str, Any]]:
        response = self.http.get("/readyz")
        assert response.headers["content-type"] == "application/json"
        body: dict[str, Any] = response.json()
        return response.status_code, body


@pytest.fixture
def daemon_thread() -> Iterator[Callable[[Engine], threading.Event]]:
    """``start(engine)`` runs the daemon in a thread and returns its stop event; at the end
    of the test every daemon is stopped and must have exited 0."""
    started: list[tuple[threading.Thread, threading.Event, list[int]]] = []

    def start(engine: Engine) -> threading.Event:
        stop = threading.Event()
        code: list[int] = []
        thread = threading.Thread(target=lambda: code.append(
            run_daemon(engine, stop_event=stop, install_signals=False)), daemon=True)
        thread.start()
        started.append((thread, stop, code))
        return stop

    yield start
    for thread, stop, code in started:
        stop.set()
        thread.join(30)
        assert not thread.is_alive() and code == [0]
