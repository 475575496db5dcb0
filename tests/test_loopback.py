"""LoopbackServer: a simulator handler served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest
import structlog

from connectors.loopback import LoopbackServer


def echo(request: httpx.Request) -> httpx.Response:
    """Answers with what it received, so the round trip can be checked field by field."""
    if request.url.path == "/boom":
        raise RuntimeError("simulator bug")
    return httpx.Response(
        201 if request.method == "POST" else 200,
        json={"method": request.method, "path": request.url.path,
              "query": dict(request.url.params), "body": request.content.decode(),
              "x_custom": request.headers.get("x-custom"),
              "content_type": request.headers.get("content-type")},
        headers={"X-Sim": "reamaze", "Retry-After": "3"},
    )


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(echo) as srv:
        yield srv


def test_get_round_trip(server: LoopbackServer) -> None:
    """A GET reaches the handler with path, query and headers, and the answer comes back."""
    with httpx.Client(base_url=server.url, timeout=5) as client:
        resp = client.get("/api/v1/conversations", params={"page": 2, "q": "a b"},
                          headers={"X-Custom": "yes"})
    assert resp.status_code == 200
    assert resp.headers["x-sim"] == "reamaze" and resp.headers["retry-after"] == "3"
    data = resp.json()
    assert data["method"] == "GET" and data["path"] == "/api/v1/conversations"
    assert data["query"] == {"page": "2", "q": "a b"}
    assert data["x_custom"] == "yes" and data["body"] == ""


def test_post_round_trip_preserves_body(server: LoopbackServer) -> None:
    """A POST body (non-ASCII JSON) arrives byte for byte and the status is kept."""
    payload = {"message": {"body": "Grüße — ✓", "visibility": 1}}
    with httpx.Client(base_url=server.url, timeout=5) as client:
        resp = client.post("/api/v1/conversations/x/messages", json=payload)
    assert resp.status_code == 201
    data = resp.json()
    assert json.loads(data["body"]) == payload
    assert data["content_type"] == "application/json"


def test_handler_exception_is_500_and_server_keeps_serving(server: LoopbackServer) -> None:
    """A handler that raises yields a 500 (and a log event); the next request is served."""
    with structlog.testing.capture_logs() as logs, \
            httpx.Client(base_url=server.url, timeout=5) as client:
        bad = client.get("/boom?key=abc")
        good = client.put("/after", content=b"still alive")
    assert bad.status_code == 500 and b"RuntimeError" in bad.content
    failures = [e for e in logs if e["event"] == "loopback_handler_failed"]
    assert len(failures) == 1 and failures[0]["path"] == "/boom"
    assert good.status_code == 200 and good.json()["body"] == "still alive"


def test_keep_alive_connection_serves_many_requests(server: LoopbackServer) -> None:
    """Several requests over one pooled connection all succeed (HTTP/1.1 keep-alive)."""
    with httpx.Client(base_url=server.url, timeout=5) as client:
        statuses = [client.delete(f"/items/{i}").status_code for i in range(20)]
    assert statuses == [200] * 20


def test_stop_releases_the_port() -> None:
    """After stop() the port no longer accepts connections."""
    srv = LoopbackServer(echo).start()
    port = srv.port
    assert httpx.get(f"{srv.url}/x", timeout=5).status_code == 200
    srv.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_stop_without_start_does_not_hang() -> None:
    """Stopping a server that was never started returns at once."""
    LoopbackServer(echo).stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com",
                                  "127.example.com", ""])
def test_refuses_non_loopback_hosts(host: str) -> None:
    """Only loopback addresses are accepted: a simulator must never be reachable remotely."""
    with pytest.raises(ValueError, match="loopback"):
        LoopbackServer(echo, host=host)


def test_ipv6_loopback_url_has_brackets() -> None:
    """On ::1 the server listens over IPv6 and its URL brackets the address."""
    try:
        srv = LoopbackServer(echo, host="::1")
    except OSError:
        pytest.skip("no IPv6 on this machine")
    with srv:
        assert srv.url.startswith("http://[::1]:")
        assert httpx.get(f"{srv.url}/v6", timeout=5).json()["path"] == "/v6"
