"""``[pairs.reverse]``: off by default, and settings that would make it do nothing (or
fail every issue it matched) are configuration errors naming the key."""

from __future__ import annotations

from typing import Any

import pytest
from test_config import errors_of, minimal

from syncer.config import parse_config


def with_reverse(reverse: dict[str, Any], kind: str = "redmine") -> dict[str, Any]:
    data = minimal()
    if kind == "github":
        data["trackers"]["main"] = {"kind": "github", "repo": "acme/app"}
    data["pairs"][0]["reverse"] = reverse
    return data


def test_reverse_creation_is_off_by_default() -> None:
    """Without the table nothing is created from the tracker."""
    assert parse_config(minimal()).pairs[0].reverse.enabled is False


def test_a_complete_rule_is_read() -> None:
    """Tracker ids (Redmine), the fallback contact, channel and tags are kept."""
    cfg = parse_config(with_reverse({"enabled": True, "tracker_ids": [1],
                                     "fallback_contact": "support@acme.example",
                                     "category": "bugs", "tags": ["from-tracker"]}))
    rules = cfg.pairs[0].reverse
    assert (rules.tracker_ids, rules.category, rules.tags) == ([1], "bugs", ["from-tracker"])


@pytest.mark.parametrize(("reverse", "kind", "line"), [
    ({"enabled": True, "fallback_contact": "s@acme.example"}, "redmine",
     "[pairs[0].reverse] enabled: true, but no issue can match: set labels (GitHub) or "
     "tracker_ids (Redmine)"),
    ({"enabled": True, "tracker_ids": [1]}, "redmine",
     "[pairs[0].reverse] fallback_contact: required when enabled"),
    ({"labels": ["bug"]}, "redmine",
     "[pairs[0].reverse] labels: tracker 'main' is a redmine tracker, which has no labels"),
    ({"tracker_ids": [1]}, "github",
     "[pairs[0].reverse] tracker_ids: tracker 'main' is a github tracker, which has no "
     "tracker types"),
    ({"fallback_contact": "support"}, "redmine",
     "[pairs[0].reverse] fallback_contact: 'support' is not an email address"),
    ({"enable": True}, "redmine", "[pairs[0].reverse] enable: unknown key"),
    ({"contact_field_id": 3}, "github",
     "[pairs[0].reverse] contact_field_id: tracker 'main' is a github tracker, which has no "
     "custom fields"),
])
def test_conflicting_settings_name_their_key(reverse: dict[str, Any], kind: str,
                                             line: str) -> None:
    """Each problem is one ``[section] key: message`` line."""
    assert any(e.startswith(line) for e in errors_of(with_reverse(reverse, kind))), \
        errors_of(with_reverse(reverse, kind))


def test_enabled_with_neither_rule_nor_contact_reports_both() -> None:
    """All problems at once."""
    lines = errors_of(with_reverse({"enabled": True}))
    assert [line.split(":")[0] for line in lines] == [
        "[pairs[0].reverse] enabled", "[pairs[0].reverse] fallback_contact"]
