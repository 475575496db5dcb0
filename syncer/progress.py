"""A backfill's progress: a bar on a terminal, log lines everywhere else.

On a terminal (and not in JSON log mode) one line at the bottom shows conversations read
out of the listing's total, the rate and an ETA. Log lines written meanwhile go *above*
it: the stream logs are written to (``LinesAbove``) clears the bar, writes the line and
draws the bar again under it, so the two never share a line. Anywhere else (a pipe, a
file, JSON logs) there is no bar at all: a ``backfill_progress`` event every
``every`` seconds, and one when the walk ends, in the log's own format, so stderr stays
pure JSON in JSON mode.

The ETA is the larger of two estimates: the rate seen so far, and what the connections'
request budgets allow for the conversations left (requests per conversation so far,
divided by each budget's rate). Early in a walk the first is noise (the first requests
spend the burst); once the budget is the limit, the second is exact.
"""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any, Literal

import structlog

from connectors.http import WRITE_METHODS, ApiClient
from syncer.check import UsesApiClient
from syncer.logs import configure_logging
from syncer.runner import PairRunner, PassResult

log = structlog.get_logger("reamaze_sync.backfill")

BAR_WIDTH = 24
REDRAW_SECONDS = 0.1
CLEAR = "\r\x1b[K"  # to the start of the line, then erase it


@dataclass(frozen=True)
class Budget:
    """One request budget of a connection and how much of it the walk has used."""

    name: str
    per_second: float
    used: Callable[[], int]


def _requests(api: ApiClient) -> Callable[[], int]:
    return lambda: api.stats.requests


def _writes(api: ApiClient) -> Callable[[], int]:
    return lambda: sum(n for m, n in api.stats.by_method.items() if m in WRITE_METHODS)


def budgets_of(apis: Iterable[tuple[str, ApiClient]]) -> list[Budget]:
    """The request budgets (overall, and writes where set) of these connections."""
    out: list[Budget] = []
    for name, api in apis:
        if api.rate_limiter is not None:
            out.append(Budget(name, api.rate_limiter.rate, _requests(api)))
        if api.write_limiter is not None:
            out.append(Budget(f"{name} writes", api.write_limiter.rate, _writes(api)))
    return out


def span(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class BackfillProgress:
    def __init__(self, pair: str, *, stream: IO[str], bar: bool, every: float = 10.0,
                 budgets: Iterable[Budget] = (), clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.pair = pair
        self.stream = stream
        self.bar = bar
        self.every = every
        self.clock = clock
        self.budgets = [(b, b.used()) for b in budgets]  # with what was used before the walk
        self.done = 0
        self.total: int | None = None
        self.started = clock()
        self._last_draw = float("-inf")
        self._last_log: float | None = None
        self.lock = threading.RLock()  # the bar and the log lines take turns

    # -- fed by the runner ---------------------------------------------------------------
    def set_total(self, total: int) -> None:
        self.total = total

    def advance(self, k: int = 1) -> None:
        with self.lock:
            self.done += k
            now = self.clock()
            if self.bar:
                if now - self._last_draw >= REDRAW_SECONDS:
                    self._draw(now)
            elif self._last_log is None or now - self._last_log >= self.every:
                self._log(now, finished=False)

    def finish(self) -> None:
        with self.lock:
            now = self.clock()
            if self.bar:
                self._draw(now)
                self.stream.write("\n")
                self.stream.flush()
            else:
                self._log(now, finished=True)

    # -- figures -------------------------------------------------------------------------
    def rate(self, now: float) -> float | None:
        elapsed = now - self.started
        return self.done / elapsed if self.done and elapsed > 0 else None

    def eta(self, now: float) -> float | None:
        """Seconds left, or None while there is no total or nothing read yet."""
        if self.total is None or not self.done:
            return None
        left = max(self.total - self.done, 0)
        rate = self.rate(now)
        guesses = [left / rate] if rate else []
        for budget, before in self.budgets:
            per_conversation = (budget.used() - before) / self.done
            guesses.append(per_conversation * left / budget.per_second)
        return max(guesses, default=None)

    # -- output --------------------------------------------------------------------------
    def line(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        rate, eta = self.rate(now), self.eta(now)
        parts = [f"[{self.pair}] conversations"]
        if self.total:
            share = min(self.done / self.total, 1.0)
            filled = int(share * BAR_WIDTH)
            parts += [f"{self.done}/{self.total}", f"{share:4.0%}",
                      f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}]"]
        else:
            parts.append(str(self.done))
        parts.append(f"{rate:.1f}/s" if rate else "-/s")
        if eta is not None:
            parts.append(f"ETA {span(eta)}")
        return " ".join(parts)[:_width(self.stream) - 1]

    def _draw(self, now: float) -> None:
        self._last_draw = now
        self.stream.write(CLEAR + self.line(now))
        self.stream.flush()

    def _log(self, now: float, *, finished: bool) -> None:
        self._last_log = now
        rate, eta = self.rate(now), self.eta(now)
        log.info("backfill_progress", pair=self.pair, done=self.done, total=self.total,
                 rate_per_second=round(rate, 2) if rate else None,
                 eta_seconds=round(eta) if eta is not None else None, finished=finished)


class LinesAbove:
    """A text stream whose complete lines are written above the progress bar."""

    def __init__(self, progress: BackfillProgress) -> None:
        self.progress = progress
        self._pending = ""

    def write(self, text: str) -> int:
        p = self.progress
        with p.lock:
            self._pending += text
            if "\n" in self._pending:
                lines, self._pending = self._pending.rsplit("\n", 1)
                p.stream.write(CLEAR + lines + "\n")
                if p.bar and p.done:
                    p.stream.write(p.line())
                p.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.progress.stream.flush()

    def isatty(self) -> bool:
        return self.progress.stream.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.progress.stream, name)


def backfill_with_progress(runner: PairRunner, *, stream: IO[str], bar: bool, every: float,
                           log_level: str, log_format: str,
                           **run: Any) -> PassResult:
    """One backfill pass of ``runner`` with its progress shown on ``stream`` (stderr)."""
    apis = [(c.name, c.api) for c in (runner.helpdesk, runner.tracker)
            if isinstance(c, UsesApiClient)]
    progress = BackfillProgress(runner.pair, stream=stream, bar=bar, every=every,
                                budgets=budgets_of(apis))
    runner.progress, runner.progress_total = progress.advance, progress.set_total
    if bar:
        configure_logging(log_level, _format(log_format), stream=LinesAbove(progress))
    try:
        return runner.run_once(**run)
    finally:
        progress.finish()
        runner.progress = runner.progress_total = None
        if bar:
            configure_logging(log_level, _format(log_format), stream=stream)


def _width(stream: IO[str]) -> int:
    """Columns of the terminal the bar is drawn on: a longer line would wrap, and the
    carriage return that redraws it would only go back to the start of its last row."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        columns = 0
    return columns if columns > 0 else shutil.get_terminal_size((100, 24)).columns


def _format(value: str) -> Literal["auto", "json", "console"]:
    return "json" if value == "json" else "console" if value == "console" else "auto"
