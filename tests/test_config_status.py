"""[pairs.status]: the status table both ways, the direction it implies, and the settings
that cannot work together (configuration errors naming the key)."""

from __future__ import annotations

from typing import Any

import pytest

from syncer.config import parse_config
from syncer.errors import ConfigError
from syncer.models import TicketState


def config(status: dict[str, Any] | None = None,
           status_field: dict[str, Any] | None = None) -> dict[str, Any]:
    pair: dict[str, Any] = {"name": "p", "tracker": "main"}
    if status is not None:
        pair["status"] = status
    if status_field is not None:
        pair["status_field"] = status_field
    return {"reamaze": {"brand": "acme", "login_email": "bot@acme.example"},
            "trackers": {"main": {"kind": "redmine", "base_url": "https://r.example",
                                  "project": "web"}},
            "pairs": [pair]}


def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value).splitlines()


def test_defaults_keep_status_flowing_from_the_tracker_only() -> None:
    """Without a table, status flows tracker → Re:amaze as before: close and reopen only."""
    pair = parse_config(config()).pairs[0]
    assert pair.status_field.direction == "tracker_to_helpdesk"
    assert (pair.status.on_issue_closed, pair.status.on_issue_reopened) == (
        TicketState.CLOSED, TicketState.OPEN)
    assert (pair.status.on_conversation_closed, pair.status.on_conversation_reopened) == (
        "nothing", "nothing")
    assert not pair.status.names_tracker_statuses


@pytest.mark.parametrize("status", [
    {"on_conversation_closed": "close_issue"},
    {"on_conversation_reopened": "reopen_issue"},
    {"conversation_to_issue": {"pending": "Feedback"}},
], ids=["close_issue", "reopen_issue", "table"])
def test_sending_status_to_the_tracker_makes_the_default_direction_both(
        status: dict[str, Any]) -> None:
    """close_issue alone used to do nothing (the direction stayed tracker_to_helpdesk):
    without a [pairs.status_field] table, the direction now follows the status table."""
    pair = parse_config(config(status)).pairs[0]
    assert (pair.status_field.direction, pair.status_field.owner) == ("both", "tracker")


def test_a_status_field_table_without_direction_keeps_its_default_both() -> None:
    """As before: a [pairs.status_field] table that leaves direction out flows both ways."""
    pair = parse_config(config(None, {"owner": "helpdesk"})).pairs[0]
    assert (pair.status_field.direction, pair.status_field.owner) == ("both", "helpdesk")


def test_an_explicit_direction_is_kept_when_it_agrees() -> None:
    pair = parse_config(config({"on_conversation_closed": "close_issue"},
                               {"direction": "helpdesk_to_tracker"})).pairs[0]
    assert pair.status_field.direction == "helpdesk_to_tracker"


def test_settings_the_direction_rules_out_are_errors_naming_each_key() -> None:
    """Every [pairs.status] setting that the direction set by hand would silently ignore is
    reported, all at once."""
    assert errors_of(config({"on_conversation_closed": "close_issue",
                             "on_conversation_reopened": "reopen_issue",
                             "conversation_to_issue": {"open": "New"}},
                            {"direction": "tracker_to_helpdesk"})) == [
        "[pairs[0].status] on_conversation_closed: 'close_issue' sends status to the "
        "tracker, but [pairs[0].status_field] direction is 'tracker_to_helpdesk'; set it to "
        "\"both\" or \"helpdesk_to_tracker\" (or leave it out)",
        "[pairs[0].status] on_conversation_reopened: 'reopen_issue' sends status to the "
        "tracker, but [pairs[0].status_field] direction is 'tracker_to_helpdesk'; set it to "
        "\"both\" or \"helpdesk_to_tracker\" (or leave it out)",
        "[pairs[0].status] conversation_to_issue: sets tracker statuses, but "
        "[pairs[0].status_field] direction is 'tracker_to_helpdesk'; set it to \"both\" or "
        "\"helpdesk_to_tracker\" (or leave it out)"]
    assert errors_of(config({"issue_to_conversation": {"Feedback": "pending"},
                             "close_reply_template": "Fixed: {subject}"},
                            {"direction": "none"})) == [
        "[pairs[0].status] issue_to_conversation: acts when the issue changes, but "
        "[pairs[0].status_field] direction is 'none'; set it to \"both\" or "
        "\"tracker_to_helpdesk\"",
        "[pairs[0].status] close_reply_template: acts when the issue changes, but "
        "[pairs[0].status_field] direction is 'none'; set it to \"both\" or "
        "\"tracker_to_helpdesk\""]


def test_a_closed_entry_needs_close_issue() -> None:
    assert errors_of(config({"conversation_to_issue": {"closed": "Resolved"}})) == [
        "[pairs[0].status] conversation_to_issue: names a status for \"closed\", but "
        "on_conversation_closed is \"nothing\"; set it to \"close_issue\" or remove the entry"]


def test_on_hold_cannot_be_set_from_a_tracker_status() -> None:
    """Re:amaze takes On Hold only with a date; a tracker status change has none."""
    lines = errors_of(config({"on_issue_closed": "on_hold",
                              "issue_to_conversation": {"Feedback": "on_hold"}}))
    assert lines == [
        "[pairs[0].status] on_issue_closed: Re:amaze needs a hold_until date to put a "
        "conversation on hold, which a tracker status change does not give",
        "[pairs[0].status] issue_to_conversation: 'Feedback': Re:amaze needs a hold_until "
        "date to put a conversation on hold, which a tracker status change does not give"]


def test_unknown_conversation_states_and_blank_statuses_are_errors() -> None:
    lines = errors_of(config({"conversation_to_issue": {"done": "Closed"},
                              "issue_to_conversation": {" ": "open", "New": "resolved"}}))
    assert any(line.startswith("[pairs[0].status.conversation_to_issue.done] [key]: Input "
                               "should be 'open', 'pending', 'on_hold' or 'closed'")
               for line in lines), lines
    assert any(line.startswith("[pairs[0].status.issue_to_conversation] New:")
               for line in lines), lines
    assert len(lines) == 2, lines
    assert errors_of(config({"issue_to_conversation": {" ": "open"}})) == [
        "[pairs[0].status] issue_to_conversation: a tracker status (name or id) may not be "
        "blank"]
