"""One error hierarchy, grouped by what the caller must do next.

    SyncError
    ├── ConfigError            fix the configuration; never retried
    ├── RetriableError         try again later (the HTTP layer already retried)
    │   ├── RateLimitedError   429; carries retry_after seconds
    │   ├── TransientError     5xx, timeouts, connection failures; ``maybe_sent`` says
    │   │                      whether the request may have reached the server
    │   ├── PairBusy           another process works the pair (state.locks)
    │   └── LeaseLost          a pass lost its pair mid-way; it stopped (state.locks)
    ├── FatalError             a human must act; retrying will not help
    │   ├── AuthError          401/403: bad or insufficient credentials
    │   ├── RedirectError      3xx: the base URL points elsewhere (never followed)
    │   ├── NotFoundError      404: the object (or the endpoint) does not exist
    │   └── RejectedError      4xx validation (422), unsafe result
    │       ├── LeakError      a copy of an internal note came back public (removed or not)
    │       └── PrivacyUnavailableError  the tracker user cannot keep a comment private
    │                          now: nothing was sent, and the object is not at fault
    └── SkippableError         this one object cannot be handled; record it and move on
        ├── BadPayloadError    malformed / undecodable / oversized response body
        └── OutcomeUnknownError  a write got no answer and is not found (yet): it may
                               still land, so it is neither retried nor given up now

Every error carries the connector, the object id, the HTTP status and a trimmed body.
Message and body are scrubbed of credentials when the error is made (a server may echo
the request's headers in its body), and the text once more when it is rendered.
"""

from __future__ import annotations

from syncer.secrets import scrub

BODY_LIMIT = 500


def trim(text: str | bytes | None, limit: int = BODY_LIMIT) -> str:
    """Error text fit to print, log or store: credentials masked, then cut to ``limit``.
    In that order: a cut through a credential would leave its first part unrecognised."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = scrub(text).strip()
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more chars)"


class SyncError(Exception):
    def __init__(
        self,
        message: str,
        *,
        connector: str | None = None,
        object_id: str | None = None,
        status: int | None = None,
        body: str | bytes | None = None,
    ) -> None:
        self.message = scrub(message)
        self.connector = connector
        self.object_id = object_id
        self.status = status
        self.body = trim(body)
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [self.message]
        if self.connector:
            parts.append(f"connector={self.connector}")
        if self.object_id:
            parts.append(f"object={self.object_id}")
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.body:
            parts.append(f"body={self.body!r}")
        # Again here: a credential registered after the error was made is masked too.
        return scrub(" ".join(parts))

    def log_fields(self) -> dict[str, object]:
        return {
            "error_type": type(self).__name__,
            "error": self.message,
            "connector": self.connector,
            "object_id": self.object_id,
            "http_status": self.status,
        }


class ConfigError(SyncError):
    pass


class RetriableError(SyncError):
    pass


class RateLimitedError(RetriableError):
    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class TransientError(RetriableError):
    def __init__(self, message: str, *, maybe_sent: bool = True, **kw: object) -> None:
        # False only when the request certainly never reached the server (no connection
        # was made): then a write may be sent again at once.
        self.maybe_sent = maybe_sent
        super().__init__(message, **kw)  # type: ignore[arg-type]


class FatalError(SyncError):
    pass


class AuthError(FatalError):
    pass


class RedirectError(FatalError):
    """Every request of the connection would be redirected the same way, so, like
    AuthError, it ends the pass instead of failing one object after another."""


class NotFoundError(FatalError):
    pass


class RejectedError(FatalError):
    pass


class LeakError(RejectedError):
    """A copy that had to stay private is public on ``ticket_id`` (comment ``comment_id``):
    ``removed`` says whether it was deleted again."""

    def __init__(self, message: str, *, removed: bool, ticket_id: str, comment_id: str,
                 **kw: object) -> None:
        self.removed = removed
        self.ticket_id = ticket_id
        self.comment_id = comment_id
        super().__init__(message, **kw)  # type: ignore[arg-type]


class PrivacyUnavailableError(RejectedError):
    """An internal note was not sent because the tracker's API user cannot keep it private
    at the moment (a role lost the permission). A state of the pair, not a fault of the
    conversation: its retries are not used up while it lasts."""


class SkippableError(SyncError):
    pass


class BadPayloadError(SkippableError):
    pass


class OutcomeUnknownError(SkippableError):
    pass
