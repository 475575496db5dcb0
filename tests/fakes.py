"""Fakes shared by the tests."""

from __future__ import annotations

from collections.abc import Callable


class FakeClock:
    """The ApiClients' clock: monotonic time moves only when something sleeps (retries,
    rate limits) and every sleep is recorded, so retry storms cost no wall time.
    ``on_sleep`` lets a simulator's own clock move along with the client's."""

    def __init__(self, start: float = 1000.0,
                 on_sleep: Callable[[float], None] | None = None) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        if self.on_sleep is not None:
            self.on_sleep(seconds)
