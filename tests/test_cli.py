"""The `reamaze-sync` command, driven like an operator would: a TOML file, environment
variables, and both APIs served by the simulators on loopback ports."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from connectors.loopback import LoopbackServer
from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.redmine.sim.simulator import RedmineSimulator
from state import StateStore
from syncer.cli import main
from syncer.sandbox import MARKER_KEY

TOKEN = "cli-reamaze-token-0123"
LOGIN = "sync-bot@acme.example"
STAFF = "jane@acme.example"
WRITES = frozenset({"POST", "PUT", "DELETE"})


class Served:
    """Both simulators on loopback, a config file pointing at them, and the CLI runner."""

    def __init__(self, tmp_path: Path, token: str = TOKEN) -> None:
        self.reamaze = ReamazeSimulator(brand="acme", login_email=LOGIN, token=token)
        self.reamaze.add_staff(STAFF, "Jane Support")
        self.redmine = RedmineSimulator()
        self.project = self.redmine.add_project("support")
        self.rz_server = LoopbackServer(self.reamaze.handle).start()
        self.rm_server = LoopbackServer(self.redmine.handle).start()
        self.db = tmp_path / "state.db"
        self.path = tmp_path / "reamaze-sync.toml"
        self.env = {"REAMAZE_API_TOKEN": token, "REDMINE_API_KEY": self.redmine.admin_key,
                    "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY}
        self.write_config()

    def write_config(self, extra: str = "") -> None:
        self.path.write_text(f"""
[state]
url = "sqlite:///{self.db}"

[reamaze]
brand = "acme"
login_email = "{LOGIN}"
base_url = "{self.rz_server.url}/api/v1"

[reamaze.http]
requests_per_minute = 100000
burst = 1000

[trackers.redmine]
kind = "redmine"
base_url = "{self.rm_server.url}"
project = "support"

[trackers.redmine.http]
requests_per_minute = 100000
burst = 1000

[[pairs]]
name = "bugs"
tracker = "redmine"
title_template = "[Re:amaze] {{subject}}"
{extra}
""")

    def close(self) -> None:
        self.rz_server.stop()
        self.rm_server.stop()

    def cli(self, *args: str, env: dict[str, Any] | None = None) -> Result:
        return invoke("--config", str(self.path), "--log-level", "warning", *args,
                      env={**self.env, **(env or {})})

    def writes(self) -> list[str]:
        return ([f"reamaze {r.method} {r.path}" for r in self.reamaze.requests
                 if r.method in WRITES]
                + [f"redmine {r.method} {r.path}" for r in self.redmine.requests
                   if r.method in WRITES])


def invoke(*args: str, env: dict[str, Any] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.close()


def _bug(served: Served, subject: str = "Crash on save") -> str:
    return served.reamaze.add_conversation(subject, "Saving crashes the app.",
                                           "carol@customer.example", tags=["bug"])


# --- configuration errors ------------------------------------------------------------------

BAD_CONFIG = """
[reamaze]
brand = "ACME Corp"
login_email = "not-an-email"
colour = "blue"

[trackers.main]
kind = "redmine"
base_url = "https://redmine.example"

[[pairs]]
name = "bugs"
tracker = "main"
interval_seconds = 1
"""


@pytest.mark.parametrize("command", [["run", "--once"], ["check"], ["status"], ["plan"],
                                     ["backfill"], ["unlink", "x", "--pair", "bugs"]])
def test_bad_config_lists_every_problem_and_exits_2(tmp_path: Path,
                                                    command: list[str]) -> None:
    """Every command reports all the file's problems as `[section] key: message` lines,
    exits 2 and shows no traceback."""
    path = tmp_path / "bad.toml"
    path.write_text(BAD_CONFIG)
    result = invoke("--config", str(path), *command)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "configuration error:"
    problems = set(lines[1:])
    assert {"[reamaze] colour: unknown key",
            "[trackers.main] project: Field required"} <= problems
    assert any(line.startswith("[reamaze] brand: String should match pattern")
               for line in problems)
    assert any(line.startswith("[reamaze] login_email: ") for line in problems)
    assert "[pairs[0]] interval_seconds: Input should be greater than or equal to 5" in problems
    assert all(re.match(r"^\[\S+\] \S+: .+", line) for line in problems), problems
    assert "Traceback" not in result.output


def test_unreadable_or_malformed_config_exits_2(tmp_path: Path) -> None:
    """A missing file and a TOML syntax error are configuration errors too (exit 2)."""
    missing = invoke("--config", str(tmp_path / "nope.toml"), "status")
    assert missing.exit_code == 2
    assert "[config] file: " in missing.stderr and "not found" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[reamaze\nbrand = 'acme'\n")
    result = invoke("--config", str(broken), "run", "--once")
    assert result.exit_code == 2 and "[config] syntax: " in result.stderr
    assert "Traceback" not in result.output


def test_unknown_tracker_reference_is_reported_with_its_location(tmp_path: Path) -> None:
    """A pair naming a tracker that does not exist is reported against that pair."""
    path = tmp_path / "ref.toml"
    path.write_text('[reamaze]\nbrand = "acme"\nlogin_email = "bot@acme.example"\n'
                    '[trackers.main]\nkind = "redmine"\nbase_url = "https://r.example"\n'
                    'project = "p"\n[[pairs]]\nname = "bugs"\ntracker = "jira"\n')
    result = invoke("--config", str(path), "check")
    assert result.exit_code == 2
    assert "[pairs[0]] tracker: unknown tracker 'jira' (known: main)" in result.stderr


# --- running against the APIs --------------------------------------------------------------

def test_run_once_syncs_and_a_second_run_writes_nothing(served: Served) -> None:
    """`run --once` creates the issue and prints the pass summary; the second run exits 0
    without a single write to either API; secrets never reach the output."""
    slug = _bug(served)
    first = served.cli("run", "--once")
    assert first.exit_code == 0, first.output
    assert re.search(r"^\[bugs\] ok; .*issues_created=1", first.stdout, re.M)
    assert len(served.redmine.state.issues) == 1
    issue = next(iter(served.redmine.state.issues.values()))
    assert issue.subject == "[Re:amaze] Crash on save"
    assert any(f"issues/{issue.id}" in m.body for m in served.reamaze.conversations[slug].messages)
    before = served.writes()
    second = served.cli("run", "--once")
    assert second.exit_code == 0 and second.stdout.startswith("[bugs] ok;")
    assert served.writes() == before
    for result in (first, second):
        assert TOKEN not in result.output and served.redmine.admin_key not in result.output


def test_run_once_with_missing_tracker_key_is_a_configuration_error(served: Served) -> None:
    """Without the tracker's key `run --once` stops before any request with a configuration
    error naming the variable and the pair that needs it (exit 2, no traceback)."""
    _bug(served)
    result = served.cli("run", "--once", env={"REDMINE_API_KEY": None})
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "configuration error:",
        "[trackers.redmine] api_key_env: environment variable REDMINE_API_KEY is not set "
        "(used by pair 'bugs')"]
    assert not served.redmine.requests and not served.reamaze.requests


def test_plan_prints_the_next_operations_and_writes_nothing(served: Served) -> None:
    """`plan` lists the issue create and the comment copies of a new bug conversation and
    sends no write to either side."""
    slug = _bug(served)
    served.reamaze.add_staff_message(slug, "Reproduced.", email=STAFF, visibility=1)
    served.reamaze.add_conversation("Invoice", "Send me the invoice.", "dave@customer.example")
    result = served.cli("plan")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"[bugs] {slug}: create issue '[Re:amaze] Crash on save'" in out
    assert f"[bugs] {slug}: post internal note with the issue link" in out
    assert re.search(rf"\[bugs\] {slug}: add internal comment to tracker \(new issue\): "
                     r"'\*\*Jane Support\*\* \(staff\)", out)
    assert re.search(rf"\[bugs\] {slug}: add public comment to tracker \(new issue\)", out)
    assert "invoice" not in out.lower()
    assert re.search(r"^\[bugs\] ok; .*planned_writes=4", out, re.M)
    assert served.writes() == []
    assert not served.redmine.state.issues


def test_backfill_dry_run_then_backfill(served: Served) -> None:
    """`backfill --dry-run` shows what would be created without writing; `backfill` then
    creates one issue per bug conversation; repeating it creates nothing more."""
    slugs = [_bug(served, f"Bug {n}") for n in range(3)]
    dry = served.cli("backfill", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert sum(f"{s}: create issue" in dry.stdout for s in slugs) == 3
    assert served.writes() == []
    real = served.cli("backfill")
    assert real.exit_code == 0, real.output
    assert "issues_created=3" in real.stdout
    again = served.cli("backfill", "--since", "2020-01-01")
    assert again.exit_code == 0 and "issues_created" not in again.stdout
    assert len(served.redmine.state.issues) == 3
    bad = served.cli("backfill", "--since", "yesterday")
    assert bad.exit_code == 2 and "[backfill] since: 'yesterday' is not an ISO date" in bad.stderr


def test_status_shows_links_cursors_runs_and_errors(served: Served) -> None:
    """`status` before any run says there is no state yet (exit 1); after a run it shows
    the link count, both cursors and the last run; after a failing run it shows the error."""
    fresh = served.cli("status")
    assert fresh.exit_code == 1
    assert f"no state database at {served.db}" in fresh.stderr
    assert not served.db.exists()
    _bug(served)
    served.cli("run", "--once")
    after = served.cli("status")
    assert "links=1 orphaned=0" in after.stdout
    assert re.search(r"cursor helpdesk: \d{4}-\d\d-\d\dT", after.stdout)
    assert re.search(r"cursor tracker: \d{4}-\d\d-\d\dT", after.stdout)
    assert re.search(r"last run: poll \d+s ago ok; .*issues_created=1", after.stdout)
    assert "pending intents: 0, failed writes: 0" in after.stdout
    served.cli("run", "--once", env={"REDMINE_API_KEY": "f" * 40})
    failed = served.cli("status")
    assert re.search(r"last run: poll \d+s ago failed", failed.stdout)
    assert re.search(r"last error \(\d+s ago\): .*rejected the API key", failed.stdout)
    assert "f" * 40 not in failed.stdout


def test_check_tries_every_connection(served: Served) -> None:
    """`check` prints one ok line per API when all credentials work (exit 0), and a FAIL
    line for the connection whose key is wrong or missing (exit 1)."""
    good = served.cli("check")
    assert good.exit_code == 0, good.output
    assert f"[reamaze] ok: brand acme as {LOGIN} (Sync Bot)" in good.stdout
    assert f"[trackers.redmine] ok: redmine {served.rm_server.url} as admin" in good.stdout
    wrong = served.cli("check", env={"REDMINE_API_KEY": "e" * 40})
    assert wrong.exit_code == 1
    assert "[reamaze] ok:" in wrong.stdout
    assert re.search(r"^\[trackers\.redmine\] FAIL .*rejected the API key", wrong.stdout, re.M)
    missing = served.cli("check", env={"REAMAZE_API_TOKEN": None})
    assert missing.exit_code == 2
    assert ("[reamaze] api_token_env: environment variable REAMAZE_API_TOKEN is not set"
            in missing.stderr)
    assert served.writes() == []


def test_link_existing_issue_then_unlink(served: Served) -> None:
    """`link` ties a conversation to an issue made by hand (the next run copies messages
    into it instead of creating another), and the same link again changes nothing; `unlink`
    forgets it and refuses an unknown one."""
    slug = served.reamaze.add_conversation("Slow search", "Search takes 30 seconds.",
                                           "erin@customer.example")  # no bug tag
    issue = served.redmine.add_issue(served.project, "Search is slow")
    linked = served.cli("link", slug, str(issue.id), "--pair", "bugs")
    assert linked.exit_code == 0, linked.output
    assert linked.stdout.strip() == (f"[bugs] linked {slug} <-> issue {issue.id}; "
                                     "the next pass syncs them")
    twice = served.cli("link", slug, str(issue.id), "--pair", "bugs")
    assert twice.exit_code == 0
    assert twice.stdout.strip() == (f"[bugs] {slug} is already linked to issue {issue.id}; "
                                    "nothing changed")
    run = served.cli("run", "--once")
    assert run.exit_code == 0, run.output
    assert len(served.redmine.state.issues) == 1
    notes = [j.notes for j in served.redmine.state.journals.values() if j.notes]
    assert len(notes) == 1 and "Search takes 30 seconds." in notes[0]

    unlinked = served.cli("unlink", slug, "--pair", "bugs", "--yes")
    assert unlinked.exit_code == 0 and unlinked.stdout.strip() == f"[bugs] unlinked {slug}"
    store = StateStore(f"sqlite:///{served.db}")
    assert store.get_link("bugs", slug) is None
    store.close()
    again = served.cli("unlink", slug, "--pair", "bugs")
    assert again.exit_code == 2
    assert f"[unlink] conversation: '{slug}' is not linked in pair 'bugs'" in again.stderr
    assert len(served.redmine.state.issues) == 1  # nothing deleted on either side


def test_link_refuses_unknown_objects_and_pairs(served: Served) -> None:
    """Linking a conversation or issue that does not exist is an error (exit 1) naming it;
    an unknown pair is a configuration error (exit 2)."""
    slug = _bug(served)
    no_issue = served.cli("link", slug, "999", "--pair", "bugs")
    assert no_issue.exit_code == 1 and no_issue.stderr.startswith("error: ")
    no_conv = served.cli("link", "no-such-conversation", "1", "--pair", "bugs")
    assert no_conv.exit_code == 1 and "no-such-conversation" in no_conv.stderr
    no_pair = served.cli("link", slug, "1", "--pair", "features")
    assert no_pair.exit_code == 2
    assert "[pairs] name: no pair named 'features' (known: bugs)" in no_pair.stderr
    assert "Traceback" not in no_issue.output + no_conv.output + no_pair.output


def test_daemon_process_stops_on_sigterm_after_saving_its_pass(served: Served) -> None:
    """`reamaze-sync run` as a real process: it syncs on start, and SIGTERM makes it exit 0
    with the pass's work in the state file."""
    import os
    import signal
    import subprocess
    import sys
    import time

    slug = _bug(served)
    exe = Path(sys.executable).with_name("reamaze-sync")
    proc = subprocess.Popen([str(exe), "--config", str(served.path), "--log-format", "json",
                             "run"], env={**os.environ, **served.env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not served.redmine.state.issues or not [
                m for m in served.reamaze.conversations[slug].messages
                if "Linked to Redmine" in m.body]:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the daemon never synced"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert '"event": "shutdown_requested"' in err and '"event": "daemon_stopped"' in err
    assert TOKEN not in err and served.redmine.admin_key not in err
    store = StateStore(f"sqlite:///{served.db}")
    try:
        link = store.get_link("bugs", slug)
        assert link is not None and link.issue_id is not None
        run = store.last_run("bugs")
        assert run is not None and run.finished_at is not None
    finally:
        store.close()
