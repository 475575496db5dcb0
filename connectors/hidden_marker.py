"""Our idempotency key as a hidden trailing HTML comment, for trackers whose markup drops
HTML comments when rendering (Redmine both formats, GitHub, GitLab).

``<!-- reamaze-sync:rs-… -->`` on the last line. Only a marker on the *last* line counts:
a reply that quotes one of our comments (``> …`` lines) must not look like our echo. Line
endings are normalised to ``\\n`` (Redmine stores ``\\r\\n``).
"""

from __future__ import annotations

import re

MARKER_TOKEN_RE = re.compile(r"^rs-[A-Za-z0-9_-]{1,100}$")
_TRAILING_MARKER_RE = re.compile(
    r"(?:\A|\n)[ \t]*<!--[ \t]*reamaze-sync:(rs-[A-Za-z0-9_-]{1,100})[ \t]*-->\s*\Z"
)


def check_marker(marker: str) -> str:
    """Markers go into text the tracker stores and renders: only our token shape passes."""
    if not MARKER_TOKEN_RE.match(marker):
        raise ValueError(f"not a sync marker: {marker[:40]!r}")
    return marker


def marker_tag(marker: str) -> str:
    return f"<!-- reamaze-sync:{check_marker(marker)} -->"


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def embed_marker(text: str, marker: str) -> str:
    body = normalise_newlines(text).rstrip()
    tag = marker_tag(marker)
    return f"{body}\n\n{tag}" if body else tag


def split_marker(text: str) -> tuple[str, str | None]:
    """(human text, marker or None): the trailing marker line is removed, nothing else."""
    text = normalise_newlines(text)
    match = _TRAILING_MARKER_RE.search(text)
    if match is None:
        return text, None
    return text[: match.start()].rstrip(), match.group(1)
