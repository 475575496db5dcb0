"""The daemon's HTTP listener: ``/healthz``, ``/readyz`` and Prometheus ``/metrics`` (and,
when configured, webhooks and the file relay's ``/files/``).

A WSGI app served by the standard library's ``wsgiref`` with a thread per request (a slow
scrape never holds up a health check); ``/metrics`` is ``prometheus_client``'s own WSGI
app on the daemon's registry. Only ``[server] listen`` turns it on, and it has no
authentication: bind it to loopback or a private network.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import structlog
from prometheus_client import CollectorRegistry, make_wsgi_app

from syncer.errors import ConfigError
from syncer.health import Readiness

log = structlog.get_logger("reamaze_sync.listener")

# Tuples: wsgiref adds Content-Length to the list it is given, so each response gets its own.
JSON = (("Content-Type", "application/json"), ("Cache-Control", "no-store"))
TEXT = (("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store"))


def health_app(registry: CollectorRegistry, ready: Callable[[], Readiness],
               webhooks: WSGIApplication | None = None,
               files: WSGIApplication | None = None) -> WSGIApplication:
    metrics = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body: Iterable[bytes] = metrics(environ, start_response)
            return body
        if webhooks is not None and path.startswith("/webhooks/"):
            hooked: Iterable[bytes] = webhooks(environ, start_response)
            return hooked
        if files is not None and path.startswith("/files/"):
            relayed: Iterable[bytes] = files(environ, start_response)
            return relayed
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [*TEXT, ("Allow", "GET, HEAD")])
            return [b"method not allowed\n"]
        if path == "/healthz":  # the process is up and serving
            start_response("200 OK", [*TEXT])
            return [b"ok\n"]
        if path == "/readyz":
            state = ready()
            start_response("200 OK" if state.ready else "503 Service Unavailable", [*JSON])
            return [json.dumps(state.as_json(), indent=2).encode() + b"\n"]
        start_response("404 Not Found", [*TEXT])
        return [b"not found: try /healthz, /readyz or /metrics\n"]

    return app


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return  # scrapes every few seconds would drown the sync's own log


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in flight never holds up the daemon's exit


class _Server6(_Server):
    address_family = socket.AF_INET6


class Listener:
    """``start()`` binds (a ``ConfigError`` naming ``[server] listen`` when it cannot) and
    serves in a background thread until ``stop()``."""

    def __init__(self, host: str, port: int, app: WSGIApplication) -> None:
        self.host = host
        self.port = port
        self.app = app
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Listener:
        try:
            family = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM,
                                        flags=socket.AI_PASSIVE)[0][0]
            server_class = _Server6 if family == socket.AF_INET6 else _Server
            self._server = make_server(self.host, self.port, self.app,
                                       server_class=server_class, handler_class=_Handler)
        except OSError as exc:
            raise ConfigError(f"[server] listen: cannot listen on {self.host}:{self.port}: "
                              f"{exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True,
                                        name="http-listener")
        self._thread.start()
        log.info("listener_started", address=f"{self.host}:{self.port}")
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        self._server = None
