"""Serve an ``httpx`` request handler (a simulator) on a loopback port.

The simulators are written once as ``handler(httpx.Request) -> httpx.Response`` so tests
use them through ``httpx.MockTransport``; this wraps the same handler in a stdlib threaded
HTTP server for the demo, the benchmarks and anyone poking at them with curl.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import httpx

Handler = Callable[[httpx.Request], httpx.Response]


class LoopbackServer:
    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        if not host.startswith("127.") and host not in ("localhost", "::1"):
            raise ValueError("simulators only listen on loopback")
        self.handler = handler
        outer = self

        class _Req(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                host_header = self.headers.get("Host") or f"{host}:{outer.port}"
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

        self._server = ThreadingHTTPServer((host, port), _Req)
        self._server.daemon_threads = True
        self.host = host
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LoopbackServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=f"loopback-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
