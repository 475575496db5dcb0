"""Everything wrong with a configuration is reported at once: field errors, cross-checks
between sections, the selected pair, and the secrets the command will need."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from syncer.config import load_config, parse_config
from syncer.errors import ConfigError

ENV = {"REAMAZE_API_TOKEN": "rz-token", "REDMINE_API_KEY": "rm-key", "OPS_KEY": "ops-key",
       "REAMAZE_SYNC_MARKER_KEY": "0123456789abcdef0123"}

TWO_PAIRS: dict[str, Any] = {
    "reamaze": {"brand": "acme", "login_email": "bot@acme.example"},
    "trackers": {
        "main": {"kind": "redmine", "base_url": "https://r.example", "project": "web"},
        "ops": {"kind": "redmine", "base_url": "https://ops.example", "project": "ops",
                "api_key_env": "OPS_KEY"},
    },
    "pairs": [{"name": "web", "tracker": "main"},
              {"name": "ops", "tracker": "ops", "enabled": False}],
}


def problems(data: dict[str, Any], **kw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(copy.deepcopy(data), **kw)
    return str(info.value).splitlines()


def env_without(*names: str, **blank: str) -> dict[str, str]:
    return {**{k: v for k, v in ENV.items() if k not in names}, **blank}


# -- secrets ----------------------------------------------------------------------------------

def test_missing_secrets_are_reported_with_the_field_errors() -> None:
    """A field error and two missing secrets come out together, field errors first."""
    data = copy.deepcopy(TWO_PAIRS)
    data["pairs"][0]["interval_seconds"] = 1
    lines = problems(data, need_secrets=True, environ={})
    assert lines[0].startswith("[pairs[0]] interval_seconds: ")
    assert lines[1:] == [
        "[reamaze] api_token_env: environment variable REAMAZE_API_TOKEN is not set",
        "[sync] marker_key_env: environment variable REAMAZE_SYNC_MARKER_KEY is not set",
        "[trackers.main] api_key_env: environment variable REDMINE_API_KEY is not set "
        "(used by pair 'web')",
    ]


def test_a_marker_key_too_short_to_be_secret_is_a_config_error() -> None:
    """The marker key makes the engine's markers unguessable: a short one is refused with
    the other problems, saying how to make a good one."""
    lines = problems(TWO_PAIRS, need_secrets=True,
                     environ={**ENV, "REAMAZE_SYNC_MARKER_KEY": "short"})
    assert len(lines) == 1 and lines[0].startswith(
        "[sync] marker_key_env: REAMAZE_SYNC_MARKER_KEY must hold at least 16 characters")
    assert "secrets.token_hex" in lines[0]


def test_secrets_are_read_from_the_raw_file_when_the_model_cannot_be_built() -> None:
    """With a tracker table too broken to validate, its secret is still checked from what
    the file says (a renamed variable included)."""
    data = copy.deepcopy(TWO_PAIRS)
    data["trackers"]["main"]["project"] = ""
    data["trackers"]["main"]["api_key_env"] = "MAIN_KEY"
    lines = problems(data, need_secrets=True, environ=ENV)
    assert lines[0].startswith("[trackers.main] project: ")
    assert lines[1:] == ["[trackers.main] api_key_env: environment variable MAIN_KEY is not "
                         "set (used by pair 'web')"]


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_blank_secret_counts_as_missing(value: str) -> None:
    """An empty or whitespace-only variable is reported like an unset one."""
    lines = problems(TWO_PAIRS, need_secrets=True,
                     environ=env_without(REDMINE_API_KEY=value))
    assert lines == ["[trackers.main] api_key_env: environment variable REDMINE_API_KEY is not "
                     "set (used by pair 'web')"]


def test_only_secrets_of_enabled_pairs_are_required() -> None:
    """A disabled pair's tracker needs no key; the enabled pairs' connections do."""
    cfg = parse_config(copy.deepcopy(TWO_PAIRS), need_secrets=True,
                       environ=env_without("OPS_KEY"))
    assert [p.name for p in cfg.pairs] == ["web", "ops"]


def test_a_selected_pair_needs_its_secrets_even_when_disabled() -> None:
    """`--pair ops` runs the disabled pair, so its key is needed and the other one not."""
    assert problems(TWO_PAIRS, pair="ops", need_secrets=True,
                    environ=env_without("OPS_KEY", "REDMINE_API_KEY")) == [
        "[trackers.ops] api_key_env: environment variable OPS_KEY is not set "
        "(used by pair 'ops')"]
    parse_config(copy.deepcopy(TWO_PAIRS), pair="web", need_secrets=True,
                 environ=env_without("OPS_KEY"))


def test_one_tracker_used_by_two_pairs_is_reported_once() -> None:
    """A missing key shared by two pairs is one problem naming both pairs."""
    data = copy.deepcopy(TWO_PAIRS)
    data["pairs"].append({"name": "web-features", "tracker": "main"})
    assert problems(data, need_secrets=True, environ=env_without("REDMINE_API_KEY")) == [
        "[trackers.main] api_key_env: environment variable REDMINE_API_KEY is not set "
        "(used by pairs 'web', 'web-features')"]


def test_unknown_selected_pair_is_listed_with_the_other_problems() -> None:
    """`--pair nope` is a problem of its own, reported alongside the field errors."""
    data = copy.deepcopy(TWO_PAIRS)
    data["reamaze"]["colour"] = "red"
    assert problems(data, pair="nope", need_secrets=True, environ=ENV) == [
        "[reamaze] colour: unknown key",
        "[pairs] name: no pair named 'nope' (known: web, ops)"]


def test_secrets_are_not_read_unless_asked() -> None:
    """Commands that use no connection (`status`, `unlink`) load without any secret."""
    parse_config(copy.deepcopy(TWO_PAIRS), environ={})


def test_load_config_reports_secrets_with_the_file_errors(tmp_path: Path) -> None:
    """The file loader takes the same options and reports the same way."""
    path = tmp_path / "sync.toml"
    path.write_text('[reamaze]\nbrand = "acme"\nlogin_email = "bot"\n'
                    '[trackers.main]\nkind = "redmine"\nbase_url = "https://r.example"\n'
                    'project = "web"\n[[pairs]]\nname = "web"\ntracker = "main"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, need_secrets=True, environ={"REDMINE_API_KEY": "k"})
    lines = str(info.value).splitlines()
    assert lines[0].startswith("[reamaze] login_email: ")
    assert lines[1] == ("[reamaze] api_token_env: environment variable REAMAZE_API_TOKEN is "
                        "not set")


# -- cross-checks ------------------------------------------------------------------------------

def test_staff_mapping_needs_redmine_user_ids_and_staff_emails() -> None:
    """Redmine assignees are numeric user ids and the keys are Re:amaze staff emails; a
    login name or a bare name is caught when the file loads, not at the first assignment."""
    data = copy.deepcopy(TWO_PAIRS)
    data["pairs"][0]["staff_to_user"] = {"jane@acme.example": "jane", "bob": "7",
                                         "ann@acme.example": "12"}
    assert problems(data) == [
        "[pairs[0]] staff_to_user: 'bob' is not an email address (keys are Re:amaze staff "
        "emails)",
        "[pairs[0]] staff_to_user: 'jane@acme.example' maps to 'jane', but Redmine user ids "
        "are numbers (tracker 'main')",
    ]


def test_labels_for_a_tracker_without_labels_are_refused() -> None:
    """tag_to_label would silently do nothing on Redmine, which has no labels."""
    data = copy.deepcopy(TWO_PAIRS)
    data["pairs"][0]["tag_to_label"] = {"bug": "Bug"}
    assert problems(data) == [
        "[pairs[0]] tag_to_label: tracker 'main' is a redmine tracker, which has no labels; "
        "remove the mapping"]


def test_closing_and_reopening_cannot_use_one_status() -> None:
    """One status cannot be both the closed and the reopened one."""
    data = copy.deepcopy(TWO_PAIRS)
    data["trackers"]["main"].update(closed_status_id=5, reopened_status_id=5)
    assert problems(data) == [
        "[trackers.main] reopened_status_id: 5 is also closed_status_id; reopening needs an "
        "open status"]


def test_all_cross_checks_come_together_with_field_errors() -> None:
    """Cross-checks are not hidden behind field errors of another section."""
    data = copy.deepcopy(TWO_PAIRS)
    data["reamaze"]["brand"] = "Not A Brand"
    data["pairs"][1]["tracker"] = "nowhere"
    lines = problems(data)
    assert lines[0].startswith("[reamaze] brand: ")
    assert "[pairs[1]] tracker: unknown tracker 'nowhere' (known: main, ops)" in lines


def test_engine_and_config_agree_on_each_trackers_secret_key() -> None:
    """The key build_engine reads a tracker's secret from is the one checked up front."""
    from syncer.app import TRACKER_KINDS

    cfg = parse_config(copy.deepcopy(TWO_PAIRS))
    for tracker in cfg.trackers.values():
        assert TRACKER_KINDS[tracker.kind][1] == type(tracker).secret_key
