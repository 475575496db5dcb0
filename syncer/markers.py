"""The idempotency keys ("markers") the engine writes on every remote object it creates.

A marker is deterministic, so a retry after a crash (or after the state was lost) finds
what the first attempt wrote; and it is keyed with a per-installation secret, so nobody
outside can predict the marker of an object the engine has not written yet and plant it
(a forged issue that recovery would adopt, a forged note that would hide a real one).

Shape: ``rs-`` + a tag of the conversation (10 hex) + a tag of the object (22 hex). The
conversation tag (the same for every pair of the installation) lets the reconciler
recognise any marker the installation made for a conversation without enumerating every
object it could have written; the object tag names the pair, the kind and the source.
Whoever sees one of our markers can copy it, so a marker alone never proves authorship:
the reconciler also requires the object to be written by the sync's own API user.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from syncer.plan import MARKER_PREFIX, Side

MIN_KEY_LENGTH = 16
_CONV_TAG = 10
_OBJECT_TAG = 22


@dataclass(frozen=True)
class Markers:
    key: bytes
    pair: str

    def __post_init__(self) -> None:
        if len(self.key) < MIN_KEY_LENGTH:
            raise ValueError(f"the marker key must be at least {MIN_KEY_LENGTH} bytes")

    def _mac(self, *parts: str) -> str:
        # \x1f keeps ("a", "bc") and ("ab", "c") apart.
        return hmac.new(self.key, "\x1f".join(parts).encode("utf-8"),
                        hashlib.sha256).hexdigest()

    def _conversation_tag(self, conversation_id: str) -> str:
        return self._mac("conversation", conversation_id)[:_CONV_TAG]

    def _make(self, conversation_id: str, *parts: str) -> str:
        obj = self._mac(self.pair, conversation_id, *parts)[:_OBJECT_TAG]
        return MARKER_PREFIX + self._conversation_tag(conversation_id) + obj

    def belongs(self, marker: str | None, conversation_id: str) -> bool:
        """A marker this installation makes for this conversation (in any of its pairs)."""
        if not marker or not marker.startswith(MARKER_PREFIX):
            return False
        tag = marker[len(MARKER_PREFIX):len(MARKER_PREFIX) + _CONV_TAG]
        return len(marker) == len(MARKER_PREFIX) + _CONV_TAG + _OBJECT_TAG and \
            hmac.compare_digest(tag, self._conversation_tag(conversation_id))

    def issue(self, conversation_id: str) -> str:
        return self._make(conversation_id, "issue")

    def link_note(self, conversation_id: str) -> str:
        return self._make(conversation_id, "linknote")

    def comment(self, conversation_id: str, source_side: Side, source_id: str) -> str:
        """The copy of comment ``source_id`` of ``source_side`` on the other side."""
        return self._make(conversation_id, "comment", Side(source_side).value, source_id)

    def orphan_note(self, conversation_id: str, issue_id: str) -> str:
        return self._make(conversation_id, "orphan", issue_id)

    def close_reply(self, conversation_id: str, issue_id: str, number: int) -> str:
        """The ``number``-th reply emailed to the customer because the issue closed: a
        repeat of the same closing (a retried pass, the issue edited meanwhile) reuses
        the key, so the customer is never mailed twice for one closing."""
        return self._make(conversation_id, "close-reply", issue_id, str(number))

    def edit_note(self, conversation_id: str, source_side: Side, source_id: str,
                  fingerprint: str) -> str:
        """The note telling that comment ``source_id`` changed to the text ``fingerprint``
        (or went: ``plan.GONE``): one note per edit, however often a pass is retried."""
        return self._make(conversation_id, "edit", Side(source_side).value, source_id,
                          fingerprint)

    def reverse_conversation(self, issue_id: str) -> str:
        """The conversation opened for tracker issue ``issue_id`` (reverse creation): it
        exists before its conversation id does, so it is keyed by the issue. Kept in the
        conversation's ``data``, where recovery and a lost state find it."""
        return self._make(reverse_key(issue_id), "reverse-conversation")


def reverse_key(issue_id: str) -> str:
    """What stands for the conversation of tracker issue ``issue_id`` until it exists (the
    intent journal's conversation id). Re:amaze slugs never contain a colon."""
    return f"issue:{issue_id}"
