"""Simulators in another process, reached through a pipe.

For the memory benchmark the engine must run alone in its process: the simulators hold
every conversation, issue and request of the run, and would swamp the figure. The
engine's connections get a ``PipeTransport`` (an ordinary ``httpx`` transport) that
ships each request to the process holding the simulators, which answers it with the
simulator's own ``handle``. A pipe round trip costs tens of microseconds, much less than
a loopback HTTP server would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any

import httpx

Handler = Callable[[httpx.Request], httpx.Response]
RESULT = "__result__"


class PipeTransport(httpx.BaseTransport):
    def __init__(self, conn: Connection, name: str) -> None:
        self.conn = conn
        self.name = name

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        content = request.read()
        self.conn.send((self.name, request.method, str(request.url), list(request.headers.raw),
                        content))
        status, headers, body = self.conn.recv()
        return httpx.Response(status, headers=headers, content=body, request=request)


def send_result(conn: Connection, payload: Any) -> None:
    conn.send((RESULT, payload))


def serve(conn: Connection, handlers: Mapping[str, Handler]) -> Any:
    """Answer requests until the other side sends its result (returned) or hangs up."""
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return None
        if message[0] == RESULT:
            return message[1]
        name, method, url, headers, content = message
        response = handlers[name](httpx.Request(method, url, headers=headers, content=content))
        response.read()
        conn.send((response.status_code, list(response.headers.raw), response.content))
