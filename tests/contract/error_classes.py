"""The error class each HTTP status must be raised as, by every connector: grouped by
what the caller does next (``syncer.errors``)."""

from __future__ import annotations

from syncer.errors import (
    AuthError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    SyncError,
    TransientError,
)

ERRORS: list[tuple[int, type[SyncError]]] = [
    (401, AuthError), (403, AuthError), (404, NotFoundError), (409, RejectedError),
    (422, RejectedError), (429, RateLimitedError), (500, TransientError),
    (502, TransientError), (503, TransientError),
]
ERROR_IDS = [str(status) for status, _ in ERRORS]
