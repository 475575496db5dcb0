"""One read of a listing page for every pair that polls the same listing at about the same
time.

All pairs of a brand walk the same change listing (``GET /conversations?filter=all&sort=
changed``, the rules are applied after reading); the daemon starts them within a few
seconds of each other. Without sharing, 60 pairs on one brand spend 60 requests a poll on
identical first pages, the whole budget of a token at 60 requests a minute.

A page is kept for ``share_seconds`` after it was read, and handed to the *other* readers
whose previous walk started before it was read. Reusing it is safe for a change feed whose
cursor is built only from what the pages show (the Re:amaze feed: its watermark is the
newest change *read*, never "now"): a kept page is a page read a few seconds earlier, and
a change it does not show yet is newer than everything on it, so the next poll finds it.
A reader never gets its own page back, nor one older than its previous walk: a pair
polling again (``run --once`` twice, a test, the settle pass after a backfill) reads
afresh, and never goes back in time. Two readers asking for a page nobody has read wait
for one read. ``share_seconds = 0`` turns sharing off.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from connectors.http import Clock, SystemClock


@dataclass
class _Kept:
    read_at: float  # when the request was sent: the page shows the listing from then on
    reader: str
    payload: Any


class SharedPages:
    def __init__(self, share_seconds: float, clock: Clock | None = None) -> None:
        self.share_seconds = share_seconds
        self.clock = clock or SystemClock()
        self._kept: dict[Hashable, _Kept] = {}
        self._lock = threading.Lock()
        self._reading: dict[Hashable, threading.Lock] = {}
        self._walks: dict[str, float] = {}  # reader -> when its latest walk started
        self.reads = 0  # pages actually requested
        self.shared = 0  # pages answered from a kept read

    def begin_walk(self, reader: str) -> float | None:
        """Record that ``reader`` starts a walk; returns when its previous one started."""
        with self._lock:
            previous = self._walks.get(reader)
            self._walks[reader] = self.clock.monotonic()
            return previous

    def get(self, key: Hashable, read: Callable[[], Any], *, reader: str,
            newer_than: float | None) -> Any:
        if self.share_seconds <= 0:
            self.reads += 1
            return read()
        with self._lock:
            gate = self._reading.setdefault(key, threading.Lock())
        with gate:  # one read per page at a time; the others take its answer
            with self._lock:
                kept = self._kept.get(key)
                if kept is not None and self._usable(kept, reader, newer_than):
                    self.shared += 1
                    return kept.payload
            sent = self.clock.monotonic()
            payload = read()
            with self._lock:
                self.reads += 1
                self._kept[key] = _Kept(sent, reader, payload)
                self._forget_old()
            return payload

    def _usable(self, kept: _Kept, reader: str, newer_than: float | None) -> bool:
        return (kept.reader != reader
                and self.clock.monotonic() - kept.read_at < self.share_seconds
                and (newer_than is None or kept.read_at > newer_than))

    def _forget_old(self) -> None:
        now = self.clock.monotonic()
        for key in [k for k, v in self._kept.items() if now - v.read_at >= self.share_seconds]:
            del self._kept[key]
            gate = self._reading.get(key)
            if gate is not None and not gate.locked():
                del self._reading[key]
