"""The strict TOML configuration and the wording of its errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from syncer.config import (
    AppConfig,
    RedmineConfig,
    load_config,
    parse_config,
    read_secret,
    tracker_kinds,
)
from syncer.errors import ConfigError
from syncer.models import TicketState

FULL: dict[str, Any] = {
    "reamaze": {
        "brand": "acme",
        "login_email": "bot@acme.example",
        "api_token_env": "ACME_REAMAZE_TOKEN",
        "http": {"requests_per_minute": 40, "burst": 2, "timeout_seconds": 15,
                 "max_attempts": 6, "max_retry_after_seconds": 120},
        "overlap_seconds": 90,
    },
    "trackers": {
        "main": {"kind": "redmine", "base_url": "https://redmine.acme.example",
                 "api_key_env": "ACME_REDMINE_KEY", "project": "web", "tracker_id": 1,
                 "priority_id": 2, "text_formatting": "textile", "closed_status_id": 5,
                 "reopened_status_id": 1, "overlap_seconds": 5},
        "ops": {"kind": "redmine", "base_url": "http://127.0.0.1:3000", "project": "ops"},
    },
    "pairs": [
        {"name": "web-bugs", "tracker": "main", "interval_seconds": 30,
         "match": {"tags": ["bug", "defect"], "channels": ["support"], "statuses": ["open"]},
         "visibility": {"customer_replies_from_tracker": True,
                        "internal_to_public_tracker": "placeholder",
                        "placeholder_text": "note hidden", "include_customer_pii": True},
         "status": {"on_issue_closed": "closed", "on_issue_reopened": "open",
                    "close_reply_template": "Fixed: {subject} ({issue_url})",
                    "on_conversation_closed": "close_issue"},
         "title_template": "[{channel}] {subject}",
         "status_field": {"direction": "both", "owner": "helpdesk"},
         "tags_field": {"direction": "none"},
         "assignee_field": {"direction": "tracker_to_helpdesk"},
         "tag_to_label": {},  # Redmine has no labels: a mapping is refused
         "staff_to_user": {"ann@acme.example": "7"},
         "since": "2026-01-01"},
        {"name": "ops", "tracker": "ops", "enabled": False},
    ],
    "state": {"url": "postgresql+psycopg://sync@localhost/sync"},
    "logging": {"level": "debug", "format": "json"},
}


def minimal() -> dict[str, Any]:
    return {
        "reamaze": {"brand": "acme", "login_email": "bot@acme.example"},
        "trackers": {"main": {"kind": "redmine", "base_url": "https://r.example",
                              "project": "web"}},
        "pairs": [{"name": "p", "tracker": "main"}],
    }


def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value).splitlines()


def test_full_config_parses_every_section() -> None:
    """A config using every section and option validates into typed, frozen models."""
    cfg = parse_config(copy.deepcopy(FULL))
    assert cfg.reamaze.api_base() == "https://acme.reamaze.io/api/v1"
    assert cfg.reamaze.http.burst == 2 and cfg.reamaze.overlap_seconds == 90
    main = cfg.trackers["main"]
    assert isinstance(main, RedmineConfig)
    assert main.text_formatting == "textile" and main.closed_status_id == 5
    pair = cfg.pair("web-bugs")
    assert pair.match.statuses == [TicketState.OPEN]
    assert pair.visibility.internal_to_public_tracker == "placeholder"
    assert pair.status.on_conversation_closed == "close_issue"
    assert pair.tags_field.direction == "none"
    assert cfg.pair("ops").enabled is False
    assert cfg.logging.level == "debug" and cfg.state.url.startswith("postgresql+psycopg")
    with pytest.raises(Exception, match="frozen"):
        cfg.reamaze.brand = "other"  # type: ignore[misc]


def test_minimal_config_gets_safe_defaults() -> None:
    """Omitted options default to the cautious choice (no customer replies, no PII)."""
    cfg = parse_config(minimal())
    pair = cfg.pairs[0]
    assert pair.visibility.customer_replies_from_tracker is False
    assert pair.visibility.include_customer_pii is False
    assert pair.visibility.internal_to_public_tracker == "skip"
    assert pair.match.tags == ["bug"]
    assert cfg.trackers["main"].http.requests_per_minute == 300
    assert cfg.reamaze.http.requests_per_minute == 60
    assert cfg.state.url == "sqlite:///reamaze-sync.db"


def test_reamaze_base_url_override() -> None:
    """An explicit base_url (a simulator) replaces the brand's URL, without trailing slash."""
    data = minimal()
    data["reamaze"]["base_url"] = "http://127.0.0.1:8001/api/v1/"
    assert parse_config(data).reamaze.api_base() == "http://127.0.0.1:8001/api/v1"


def test_all_errors_reported_at_once_as_section_key_message() -> None:
    """Problems in several sections are all reported, one `[section] key: message` per line."""
    data = minimal()
    data["reamaze"] = {"brand": "Acme!", "login_email": "not-an-email", "colour": "red"}
    data["trackers"]["main"]["project"] = ""
    data["trackers"]["main"]["base_url"] = "redmine.example"
    data["pairs"][0]["interval_seconds"] = 1
    data["state"] = {"url": "mysql://x"}
    lines = errors_of(data)
    assert len(lines) == 7, lines
    assert lines[0].startswith("[reamaze] brand: ")
    assert lines[1].startswith("[reamaze] login_email: ")
    assert "[reamaze] colour: unknown key" in lines
    assert any(line.startswith("[trackers.main] project: ") for line in lines)
    assert any(line.startswith("[trackers.main] base_url: ") for line in lines)
    assert any(line.startswith("[pairs[0]] interval_seconds: ") and "5" in line
               for line in lines)
    assert "[state] url: must start with sqlite:// or postgresql://" in lines


def test_nested_and_list_locations_are_readable() -> None:
    """Nested tables and list items print as `[pairs[0].match] tags` / `statuses[1]`."""
    data = minimal()
    data["pairs"][0]["match"] = {"tags": "bug", "statuses": ["open", "resolved"]}
    data["pairs"][0]["visibility"] = {"internal_to_public_tracker": "copy"}
    lines = errors_of(data)
    assert any(line.startswith("[pairs[0].match] tags: Input should be a valid list")
               for line in lines), lines
    assert any(line.startswith("[pairs[0].match] statuses[1]: ") for line in lines), lines
    assert any(line.startswith("[pairs[0].visibility] internal_to_public_tracker: ")
               for line in lines), lines


def test_validator_messages_have_no_pydantic_prefix() -> None:
    """Our own validator messages are printed without pydantic's 'Value error,' prefix."""
    data = minimal()
    data["pairs"][0]["title_template"] = "{subject} {assignee}"
    assert errors_of(data) == ["[pairs[0]] title_template: unknown placeholder(s) ['assignee']; "
                               "use subject, slug, channel"]


def test_unknown_key_in_nested_table() -> None:
    """A misspelled option in a tracker table is an unknown key at that tracker."""
    data = minimal()
    data["trackers"]["main"]["projet"] = "web"
    assert errors_of(data) == ["[trackers.main] projet: unknown key"]


def test_write_budget_defaults_to_none_and_is_read_per_connection() -> None:
    """writes_per_minute is unset by default and set per connection, up to the overall rate."""
    data = minimal()
    assert parse_config(copy.deepcopy(data)).reamaze.http.writes_per_minute is None
    data["trackers"]["main"]["http"] = {"requests_per_minute": 80, "writes_per_minute": 80}
    data["reamaze"]["http"] = {"writes_per_minute": 20}  # under the default 60
    cfg = parse_config(data)
    assert cfg.trackers["main"].http.writes_per_minute == 80
    assert cfg.reamaze.http.writes_per_minute == 20


def test_write_budget_above_the_overall_budget_is_rejected() -> None:
    """More writes than requests a minute could never be sent: an error naming the key."""
    data = minimal()
    data["trackers"]["main"]["http"] = {"requests_per_minute": 300, "writes_per_minute": 301}
    data["reamaze"]["http"] = {"writes_per_minute": 61}  # above the default 60
    assert errors_of(data) == [
        "[reamaze.http] writes_per_minute: must not exceed requests_per_minute: every write "
        "also draws from that budget",
        "[trackers.main.http] writes_per_minute: must not exceed requests_per_minute: every "
        "write also draws from that budget"]


@pytest.mark.parametrize("value", [0, -5])
def test_write_budget_must_be_positive(value: int) -> None:
    """A zero or negative write budget is rejected like any other rate."""
    data = minimal()
    data["reamaze"]["http"] = {"writes_per_minute": value}
    lines = errors_of(data)
    assert len(lines) == 1 and lines[0].startswith("[reamaze.http] writes_per_minute: "), lines


def test_an_invalid_overall_budget_is_reported_once() -> None:
    """A bad requests_per_minute is the only error; the write budget is not compared to it."""
    data = minimal()
    data["reamaze"]["http"] = {"requests_per_minute": 0, "writes_per_minute": 10}
    lines = errors_of(data)
    assert len(lines) == 1 and lines[0].startswith("[reamaze.http] requests_per_minute: ")


def test_unknown_top_level_section() -> None:
    """A misspelled top-level section is reported against the config root."""
    data = minimal()
    data["pair"] = []
    assert errors_of(data) == ["[config] pair: unknown key"]


def test_missing_sections_are_named() -> None:
    """Missing required sections are each reported as required."""
    lines = errors_of({})
    assert lines == ["[config] reamaze: Field required", "[config] trackers: Field required",
                     "[config] pairs: Field required"]


def test_unknown_tracker_kind_lists_known_kinds() -> None:
    """An unknown tracker kind names the kind and lists the supported ones."""
    data = minimal()
    data["trackers"]["jira"] = {"kind": "jira", "base_url": "https://j.example"}
    assert tracker_kinds() == ["github", "gitlab", "redmine"]
    assert errors_of(data) == ["[trackers.jira] kind: unknown tracker kind 'jira' "
                               "(known: github, gitlab, redmine)"]


def test_missing_tracker_kind() -> None:
    """A tracker table without a kind says the kind is missing and lists the options."""
    data = minimal()
    del data["trackers"]["main"]["kind"]
    assert errors_of(data) == [
        "[trackers.main] kind: missing (known kinds: github, gitlab, redmine)"]


def test_pair_that_is_not_a_table() -> None:
    """A list item of the wrong type is located by its index."""
    data = minimal()
    data["pairs"].append("second")
    lines = errors_of(data)
    assert len(lines) == 1 and lines[0].startswith("[config] pairs[1]: ")


def test_unknown_tracker_reference_in_pair() -> None:
    """A pair naming a tracker that is not configured is reported at that pair."""
    data = minimal()
    data["pairs"].append({"name": "q", "tracker": "github"})
    assert errors_of(data) == ["[pairs[1]] tracker: unknown tracker 'github' (known: main)"]


def test_duplicate_pair_names_and_bad_references_all_reported() -> None:
    """Every duplicate name and every bad reference is reported, not only the first."""
    data = minimal()
    data["pairs"] += [{"name": "p", "tracker": "main"}, {"name": "x", "tracker": "nope"},
                      {"name": "x", "tracker": "main"}]
    assert errors_of(data) == [
        "[pairs[1]] name: 'p' is already used by pairs[0]",
        "[pairs[2]] tracker: unknown tracker 'nope' (known: main)",
        "[pairs[3]] name: 'x' is already used by pairs[2]",
    ]


def test_model_validate_also_rejects_bad_references() -> None:
    """The reference checks live in the model, so AppConfig.model_validate enforces them too."""
    data = minimal()
    data["pairs"][0]["tracker"] = "elsewhere"
    with pytest.raises(ValueError, match="unknown tracker 'elsewhere'"):
        AppConfig.model_validate(data)


def test_pair_lookup_by_name() -> None:
    """AppConfig.pair returns the named pair or a ConfigError listing the known names."""
    cfg = parse_config(copy.deepcopy(FULL))
    assert cfg.pair("ops").tracker == "ops"
    with pytest.raises(ConfigError, match=r"\[pairs\] name: no pair named 'x' "
                                          r"\(known: web-bugs, ops\)"):
        cfg.pair("x")


# -- files ----------------------------------------------------------------------------------

VALID_TOML = """
[reamaze]
brand = "acme"
login_email = "bot@acme.example"

[trackers.main]
kind = "redmine"
base_url = "https://redmine.acme.example"
project = "web"

[[pairs]]
name = "web"
tracker = "main"
match.tags = ["bug"]
"""


def test_load_config_reads_toml_file(tmp_path: Path) -> None:
    """A valid TOML file loads through the real schema."""
    path = tmp_path / "sync.toml"
    path.write_text(VALID_TOML, encoding="utf-8")
    cfg = load_config(path)
    assert cfg.pairs[0].name == "web" and cfg.trackers["main"].project == "web"


def test_toml_syntax_error(tmp_path: Path) -> None:
    """A TOML syntax error is a ConfigError under [config] syntax, with the position."""
    path = tmp_path / "sync.toml"
    path.write_text('[reamaze]\nbrand = "acme\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert text.startswith(f"[config] syntax: {path}: ")
    assert "line 2" in text


def test_validation_errors_from_file(tmp_path: Path) -> None:
    """Schema errors in a file use the same `[section] key: message` lines."""
    path = tmp_path / "sync.toml"
    path.write_text(VALID_TOML.replace('login_email = "bot@acme.example"',
                                       'login_email = "bot"\ntoken = "x"'), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert lines[0].startswith("[reamaze] login_email: ")
    assert lines[1] == "[reamaze] token: unknown key"


def test_missing_file(tmp_path: Path) -> None:
    """A missing file says so and tells how to provide one."""
    with pytest.raises(ConfigError, match=r"^\[config\] file: .*nope\.toml not found"):
        load_config(tmp_path / "nope.toml")


def test_non_utf8_file(tmp_path: Path) -> None:
    """A file that is not UTF-8 is a ConfigError, not a UnicodeDecodeError."""
    path = tmp_path / "latin1.toml"
    path.write_bytes('[reamaze]\nbrand = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"^\[config\] file: .* is not UTF-8$"):
        load_config(path)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    """Pointing at a directory is a ConfigError rather than an OSError traceback."""
    with pytest.raises(ConfigError, match=r"^\[config\] file: "):
        load_config(tmp_path)


# -- secrets --------------------------------------------------------------------------------

def test_read_secret_returns_secretstr() -> None:
    """read_secret reads the variable into a SecretStr whose repr hides the value."""
    secret = read_secret("MY_TOKEN", "reamaze", "api_token_env",
                         environ={"MY_TOKEN": "  s3cr3t-value \n"})
    assert secret.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t" not in repr(secret) and "s3cr3t" not in str(secret)


@pytest.mark.parametrize("environ", [{}, {"MY_TOKEN": ""}, {"MY_TOKEN": "   "}])
def test_read_secret_missing(environ: dict[str, str]) -> None:
    """An unset or blank variable is reported as `[section] key: environment variable X...`."""
    with pytest.raises(ConfigError) as info:
        read_secret("MY_TOKEN", "trackers.main", "api_key_env", environ=environ)
    assert str(info.value) == ("[trackers.main] api_key_env: environment variable MY_TOKEN "
                               "is not set")


def test_read_secret_uses_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit mapping the process environment is used."""
    monkeypatch.setenv("RS_TEST_TOKEN", "from-env-123")
    assert read_secret("RS_TEST_TOKEN", "reamaze", "api_token_env").get_secret_value() == \
        "from-env-123"
    monkeypatch.delenv("RS_TEST_TOKEN")
    with pytest.raises(ConfigError, match="RS_TEST_TOKEN is not set"):
        read_secret("RS_TEST_TOKEN", "reamaze", "api_token_env")


def test_config_errors_never_echo_values() -> None:
    """Error lines describe the problem without repeating the offending value."""
    data = minimal()
    secretish = "hunter2-should-not-be-here"
    data["reamaze"]["api_token_env"] = 12345  # wrong type
    data["reamaze"]["password"] = secretish  # someone pasted a secret into the file
    data["state"] = {"url": secretish}
    lines = errors_of(data)
    assert len(lines) == 3
    assert all(secretish not in line for line in lines)
    assert "[reamaze] password: unknown key" in lines


@pytest.mark.parametrize("template", ["{}", "{ subject }", "Bug {", "{subject.x}", "{nope}"])
def test_title_templates_that_would_fail_at_render_time_are_rejected_at_load(
        template: str) -> None:
    """A title template str.format cannot render is a config error, not a crash every pass."""
    from syncer.config import PairConfig

    with pytest.raises(ValidationError):
        PairConfig(name="p", tracker="t", title_template=template)
