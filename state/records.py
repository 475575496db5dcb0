"""Frozen values the store hands out, so no ORM row (or its session) leaks to the engine."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from syncer.plan import Side

IntentKind = Literal["create_issue", "add_comment", "update_ticket"]
IntentStatus = Literal["pending", "done", "failed"]
RunKind = Literal["poll", "backfill", "webhook", "verify"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Intent(_Frozen):
    """One journalled write: recorded before the remote call, completed after it, so a
    crash in between is found on the next run and resolved by searching for ``key``."""

    id: int
    pair: str
    key: str  # idempotency key; the marker written on the remote object
    kind: IntentKind
    conversation_id: str
    target: Side
    payload: dict[str, Any] = Field(default_factory=dict)
    status: IntentStatus
    result_id: str | None = None  # id of the object the write created
    error: str | None = None  # last failure, cleared when the write completes
    attempts: int = 0
    created_at: AwareDatetime
    updated_at: AwareDatetime  # when it was last (re)journalled, i.e. last sent
    lookups: int = 0  # recovery lookups since the last send
    last_lookup_at: AwareDatetime | None = None

    @property
    def done(self) -> bool:
        return self.status == "done"


class RunRecord(_Frozen):
    id: int
    pair: str
    kind: RunKind
    started_at: AwareDatetime
    finished_at: AwareDatetime | None = None  # None while running (or if it crashed)
    counts: dict[str, int] = Field(default_factory=dict)
    error: str | None = None
    holder: str | None = None  # host:pid of the process that ran it

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


class FailureRecord(_Frozen):
    """A dead-letter entry: one object that keeps failing, set aside so the rest of the
    pair keeps syncing, until an operator retries (clears) or skips it."""

    pair: str
    side: Side
    object_id: str
    error: str
    attempts: int
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    skipped: bool = False


class LeakRecord(_Frozen):
    """A copy of internal content found public that the engine could not remove."""

    pair: str
    conversation_id: str
    side: Side
    ticket_id: str
    comment_id: str
    detail: str
    detected_at: AwareDatetime
    resolved_at: AwareDatetime | None = None


class LearnedRateRecord(_Frozen):
    """A request rate learned from 429s, as the last process to save it left it."""

    key: str
    service: str
    per_minute: float
    refused_at_per_minute: float | None = None
    updated_at: AwareDatetime
