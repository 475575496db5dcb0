"""Small HTTP helpers shared by the simulator's route modules: JSON answers, request
bodies, and Re:amaze's page envelope (30 per page, ``page_size/page_count/total_count``;
a page past the end is an empty list with the same counters)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import httpx

PAGE_SIZE = 30
JSON = dict[str, Any]


class BadJson(Exception):
    """The request body is not a JSON object (Rails answers 400)."""


class Invalid(Exception):
    """A validation failure, answered as 422 ``{"errors": {field: [messages]}}``."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__(json.dumps(errors))


def json_response(status: int, payload: Any) -> httpx.Response:
    return httpx.Response(status, json=payload,
                          headers={"Content-Type": "application/json; charset=utf-8"})


def error(status: int, message: str) -> httpx.Response:
    return json_response(status, {"error": message})


def read_body(request: httpx.Request) -> JSON:
    try:
        data = json.loads(request.content.decode("utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadJson() from None
    if not isinstance(data, dict):
        raise BadJson()
    return data


def page_number(value: str | None) -> int:
    try:
        n = int(value) if value is not None else 1
    except ValueError:
        return 1
    return n if n >= 1 else 1


def page_of(key: str, objs: list[Any], params: dict[str, str],
            render: Callable[[Any], JSON]) -> httpx.Response:
    """One page; only the requested slice is rendered (benchmarks hold thousands)."""
    page = page_number(params.get("page"))
    total = len(objs)
    chunk = objs[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    return json_response(200, {"page_size": PAGE_SIZE, "page_count": math.ceil(total / PAGE_SIZE),
                               "total_count": total, key: [render(o) for o in chunk]})
