"""Serve an ``httpx`` request handler (a simulator) on a loopback port.

The simulators are written once as ``handler(httpx.Request) -> httpx.Response`` so tests
use them through ``httpx.MockTransport``; this wraps the same handler in a stdlib threaded
HTTP server for the demo, the benchmarks and anyone poking at them with curl.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import httpx
import structlog

log = structlog.get_logger("reamaze_sync.loopback")

Handler = Callable[[httpx.Request], httpx.Response]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name such as "127.example.com" resolves anywhere
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class LoopbackServer:
    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        if not _is_loopback(host):
            raise ValueError(f"simulators only listen on loopback, not {host!r}")
        self.handler = handler
        outer = self

        class _Req(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body are separate writes; with Nagle on, each keep-alive request
            # waits ~40 ms for a delayed ACK.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                host_header = self.headers.get("Host") or outer.url.removeprefix("http://")
                request = httpx.Request(
                    self.command,
                    f"http://{host_header}{self.path}",
                    headers=list(self.headers.items()),
                    content=body,
                )
                try:
                    response = outer.handler(request)
                    payload = response.read()
                except Exception as exc:  # the simulator's bug must not kill the server
                    log.warning("loopback_handler_failed", method=self.command,
                                path=self.path.split("?", 1)[0], exc_info=True)
                    response = httpx.Response(500)
                    payload = f"simulator error: {type(exc).__name__}".encode()
                self.send_response(response.status_code)
                for key, value in response.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection",
                                           "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, format: str, *args: object) -> None:
                return

        server_class = _Server6 if ":" in host else _Server
        self._server = server_class((host, port), _Req)
        self.host = host
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> LoopbackServer:
        # A short poll interval makes stop() return in tens of ms instead of half a second.
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name=f"loopback-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        # shutdown() waits for serve_forever to acknowledge, so it would hang forever on
        # a server that was never started.
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
