"""A backfill's progress: the listing's total, the rate and an ETA; a bar on a terminal with
log lines above it; JSON progress lines (and nothing else) on a piped stderr in JSON mode."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import sandbox
from test_cli import Served

from syncer.progress import CLEAR, BackfillProgress, Budget, LinesAbove

EXE = Path(sys.executable).with_name("reamaze-sync")
BUGS = 35  # two pages of the simulator's 30


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.close()


def bugs(served: Served, n: int = BUGS) -> list[str]:
    return [served.reamaze.add_conversation(f"Bug {i}", "It crashes.", f"c{i}@customer.example",
                                            tags=["bug"]) for i in range(n)]


def progress_events(stderr: str) -> list[dict[str, object]]:
    lines = stderr.splitlines()
    parsed = [json.loads(line) for line in lines]  # every line: stderr is pure JSON
    return [e for e in parsed if e["event"] == "backfill_progress"]


def test_piped_stderr_gets_json_progress_lines(served: Served) -> None:
    """Not on a terminal, in JSON mode: stderr holds only JSON lines; with
    --progress-every 0 there is one progress event per conversation, each with the listing's
    total, then a final one (done = total, finished), with a rate and an ETA."""
    bugs(served)
    proc = subprocess.run([str(EXE), "--config", str(served.path), "--log-format", "json",
                           "backfill", "--progress-every", "0"], env={**os.environ,
                           **served.env}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    events = progress_events(proc.stderr)
    steps = [e for e in events if not e["finished"]]
    assert [e["done"] for e in steps] == list(range(1, BUGS + 1))
    assert {e["total"] for e in events} == {BUGS}
    assert all(isinstance(e["rate_per_second"], float) and e["rate_per_second"] > 0
               and isinstance(e["eta_seconds"], int) and e["eta_seconds"] >= 0 for e in steps)
    final = events[-1]
    assert final["finished"] is True and final["done"] == BUGS and final["eta_seconds"] == 0
    assert "issues_created=35" in proc.stdout


def test_default_cadence_still_reports_the_start_and_the_end(served: Served) -> None:
    """At the default cadence (a line every 10 s) a short backfill logs its first
    conversation and its end, and no bar or label ever reaches the JSON stream."""
    bugs(served, 3)
    proc = subprocess.run([str(EXE), "--config", str(served.path), "--log-format", "json",
                           "backfill"], env={**os.environ, **served.env}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    events = progress_events(proc.stderr)
    assert [(e["done"], e["finished"]) for e in events] == [(1, False), (3, True)]
    assert "conversations" not in proc.stderr.replace('"conversations_seen"', "")


def shown(output: str) -> list[str]:
    """The lines a terminal ends up showing: within a line, what follows the last carriage
    return (or erase) is what stays visible."""
    out = []
    for line in output.replace("\r\n", "\n").split("\n"):
        text = re.sub(r"\x1b\[[0-9;]*m", "", line)  # colours
        out.append(re.split(r"\r(?:\x1b\[K)?", text)[-1])
    return [line for line in out if line]


def test_a_terminal_gets_a_bar_with_log_lines_above_it(served: Served) -> None:
    """On a terminal: a bar with count/total, percentage, rate and ETA; an error logged
    mid-walk appears on a line of its own above the bar, never inside it; the bar ends at
    35/35 100%."""
    slugs = bugs(served)
    served.reamaze.faults.add(200, body=b"<html>oops</html>", content_type="application/json",
                              path=rf"/conversations/{slugs[20]}/messages", times=None)
    leader, follower = pty.openpty()
    proc = subprocess.Popen([str(EXE), "--config", str(served.path), "--log-level", "warning",
                             "backfill"], env={**os.environ, **served.env, "COLUMNS": "200"},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    raw = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the process is gone, and its terminal with it
            break
        if not chunk:
            break
        raw += chunk
    proc.wait(timeout=60)
    os.close(leader)
    assert proc.returncode == 1  # the poisoned conversation failed; the others synced
    lines = shown(raw.decode())
    # Its messages come from the backfill's read-ahead or its own read, so what fails
    # first is that read or the link note written to it: either way one error line.
    errors = [line for line in lines if re.search(r"object_unreadable|operation_failed", line)]
    assert len(errors) == 1 and "conversations" not in re.split(
        r"object_unreadable|operation_failed", errors[0])[0]
    assert not re.search(r"\d+/\d+ .*(object_unreadable|operation_failed)"
                         r"|(object_unreadable|operation_failed).*\d+/35", errors[0])
    bar = re.compile(r"^\[bugs\] conversations (\d+)/35 +(\d+)% \[[#.]{24}\] [\d.]+/s "
                     r"ETA \d+(m\d\ds)?s?$")
    bars = [m for m in map(bar.match, lines) if m]
    assert bars, lines
    assert lines[-1] == bars[-1].string and bars[-1].group(1, 2) == ("35", "100")
    assert raw.count(CLEAR.encode()) > 2  # drawn more than once, in place
    assert "/0" not in raw.decode()


def test_eta_takes_the_request_budget_into_account() -> None:
    """10 of 100 conversations read in 1 s, at 2 requests each against a budget of one
    request a second: the 90 left need 180 s whatever the rate so far says."""
    now = [100.0]
    used = [0]
    stream = io.StringIO()
    progress = BackfillProgress("bugs", stream=stream, bar=True, clock=lambda: now[0],
                                budgets=[Budget("reamaze", 1.0, lambda: used[0])])
    progress.set_total(100)
    for _ in range(10):
        now[0] += 0.1
        used[0] += 2
        progress.advance()
    assert progress.eta(now[0]) == pytest.approx(180.0)
    assert progress.line().startswith("[bugs] conversations 10/100  10% [##......")
    assert progress.line().endswith("] 10.0/s ETA 3m00s")
    LinesAbove(progress).write("a log line\n")
    assert stream.getvalue().endswith(f"{CLEAR}a log line\n{progress.line()}")


def test_the_runner_reports_every_conversation_and_the_total(tmp_path: Path) -> None:
    """The runner tells its progress about each conversation it reads and about the total
    the listing announces."""
    sb = sandbox(tmp_path)
    for i in range(BUGS):
        sb.reamaze.add_conversation(f"Bug {i}", "It crashes.", f"c{i}@customer.example",
                                    tags=["bug"])
    engine = sb.engine()
    runner = engine.runner(engine.config.pairs[0])
    assert not isinstance(runner, Exception)
    seen: list[int] = []
    totals: list[int] = []
    runner.progress, runner.progress_total = seen.append, totals.append
    result = runner.run_once(kind="backfill", full=True)
    assert result.ok and sum(seen) == result.counts["conversations_seen"] == BUGS
    assert set(totals) == {BUGS}
    engine.close()
