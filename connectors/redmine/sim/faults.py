"""The request log of the Redmine simulator (fault injection: ``connectors.simfaults``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimRequest:
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    status: int | None
    user: str | None
