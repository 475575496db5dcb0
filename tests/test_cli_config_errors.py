"""Configuration problems stop every command before it connects, all listed at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from test_cli import Served

PAIRS = """
[trackers.product]
kind = "redmine"
base_url = "{url}"
project = "roadmap"
api_key_env = "PRODUCT_REDMINE_KEY"

[[pairs]]
name = "features"
tracker = "product"
enabled = false
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    saved = structlog.get_config()
    s = Served(tmp_path)
    s.redmine.add_project("roadmap")
    s.write_config(PAIRS.format(url=s.rm_server.url))
    yield s
    s.close()
    structlog.configure(**saved)


def test_field_errors_and_missing_secrets_come_out_together(served: Served) -> None:
    """A field error and a missing secret of an enabled pair are listed together (exit 2)
    before anything is sent."""
    served.write_config(PAIRS.format(url=served.rm_server.url) + "interval_seconds = 1\n")
    result = served.cli("run", "--once", env={"REAMAZE_API_TOKEN": "  "})
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "configuration error:",
        "[pairs[1]] interval_seconds: Input should be greater than or equal to 5",
        "[reamaze] api_token_env: environment variable REAMAZE_API_TOKEN is not set"]
    assert not served.reamaze.requests and not served.redmine.requests


def test_a_disabled_pair_needs_no_key_until_selected(served: Served) -> None:
    """The disabled pair's missing key does not stop the enabled one; `--pair features`
    selects it, and then its key is required."""
    served.reamaze.add_conversation("Crash", "It crashes.", "c@customer.example", tags=["bug"])
    ok = served.cli("run", "--once")
    assert ok.exit_code == 0, ok.output
    assert "issues_created=1" in ok.stdout
    for command in (["run", "--once"], ["plan"], ["backfill", "--dry-run"]):
        selected = served.cli(*command, "--pair", "features")
        assert selected.exit_code == 2, command
        assert ("[trackers.product] api_key_env: environment variable PRODUCT_REDMINE_KEY is "
                "not set (used by pair 'features')") in selected.stderr
    link = served.cli("link", "x", "1", "--pair", "features")
    assert link.exit_code == 2 and "PRODUCT_REDMINE_KEY is not set" in link.stderr


def test_unknown_pair_is_listed_with_the_other_problems(served: Served) -> None:
    """`--pair` naming no pair is one more line of the same list."""
    result = served.cli("plan", "--pair", "nope", env={"REDMINE_API_KEY": None})
    assert result.exit_code == 2
    assert result.stderr.splitlines()[1:] == [
        "[pairs] name: no pair named 'nope' (known: bugs, features)"]


def test_status_and_unlink_need_no_secrets(served: Served) -> None:
    """Commands that never connect run without any secret set."""
    assert served.cli("run", "--once").exit_code == 0
    bare = {"REAMAZE_API_TOKEN": None, "REDMINE_API_KEY": None}
    status = served.cli("status", env=bare)
    assert status.exit_code == 0, status.output
    unlink = served.cli("unlink", "nothing-here", "--pair", "bugs", env=bare)
    assert unlink.exit_code == 2 and "is not linked" in unlink.stderr
