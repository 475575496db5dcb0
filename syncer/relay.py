"""The file relay: tracker files handed to Re:amaze through the daemon's listener.

Re:amaze attaches a file to a message only by fetching a URL, and a tracker's file URL
wants a login (Redmine's API key). With ``[server] relay_url`` set, the daemon gives
Re:amaze a link of its own instead: ``GET /files/<token>/<name>`` on its listener, where
the token carries the tracker, the file's tracker URL and an expiry, signed with a key
derived from the marker key. The token is readable (it names the tracker URL, never a
credential); nobody can make or alter a link without the key, and a link
stops working ``relay_link_minutes`` after it was made (Re:amaze fetches it once, while
the message is posted). The file is fetched through the tracker connector, so the
tracker's credentials never leave the daemon.

Only the daemon relays (it runs the listener): a one-off ``run --once`` names the files in
the copy instead, as it does without a relay.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import quote
from wsgiref.types import StartResponse, WSGIEnvironment

import structlog

from connectors.base import Connector, DownloadsAttachments
from syncer.errors import ConfigError, SyncError
from syncer.models import Attachment

log = structlog.get_logger("reamaze_sync.relay")

PREFIX = "/files/"
_SIG = 32  # hex characters of the HMAC kept: 128 bits
TEXT = [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FileRelay:
    def __init__(self, marker_key: bytes, base_url: str, ttl: timedelta,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        # A key of its own: a link's signature can never double as a marker.
        self._key = hmac.new(marker_key, b"reamaze-sync file relay", hashlib.sha256).digest()
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl
        self.now = now

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).hexdigest()[:_SIG]

    def link(self, tracker: str, attachment: Attachment) -> Attachment:
        """The attachment with a relay URL in place of the tracker's (unchanged without a
        tracker URL: there is nothing to fetch)."""
        if not attachment.url:
            return attachment
        expires = int((self.now() + self.ttl).timestamp())
        payload = _b64(json.dumps({"t": tracker, "u": attachment.url, "e": expires},
                                  separators=(",", ":")).encode("utf-8"))
        name = quote(attachment.name or "file", safe="")
        url = f"{self.base_url}{PREFIX}{payload}.{self._sign(payload)}/{name}"
        return attachment.model_copy(update={"url": url})

    def resolve(self, path: str) -> tuple[str, Attachment] | None:
        """(tracker, attachment) for a genuine, unexpired link path; None for anything
        else (one answer for every refusal: no oracle)."""
        if not path.startswith(PREFIX):
            return None
        token, _, name = path[len(PREFIX):].partition("/")
        payload, _, sig = token.partition(".")
        if not payload or not hmac.compare_digest(sig, self._sign(payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            tracker, url, expires = str(data["t"]), str(data["u"]), int(data["e"])
        except (ValueError, KeyError, TypeError):
            return None
        if self.now().timestamp() > expires:
            return None
        return tracker, Attachment(name=name or "file", url=url)


def relay_app(relay: FileRelay, trackers: Mapping[str, Connector | ConfigError]
              ) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    """``GET /files/…``: the file, fetched from its tracker, for a valid link; 404 else."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [*TEXT, ("Allow", "GET, HEAD")])
            return [b"method not allowed\n"]
        found = relay.resolve(environ.get("PATH_INFO", ""))
        connector = trackers.get(found[0]) if found else None
        if found is None or not isinstance(connector, DownloadsAttachments):
            log.warning("file_relay_refused", reason="unknown, altered or expired link")
            start_response("404 Not Found", [*TEXT])
            return [b"not found\n"]
        tracker, attachment = found
        try:
            data = connector.download_attachment(attachment)
        except SyncError as exc:
            log.error("file_relay_failed", tracker=tracker, **exc.log_fields())
            start_response("502 Bad Gateway", [*TEXT])
            return [b"the tracker did not hand out the file\n"]
        log.info("file_relayed", tracker=tracker, name=attachment.name, size=len(data))
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Cache-Control", "no-store")])
        return [data]

    return app
