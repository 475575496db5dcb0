"""`explain` in words, from the reconciler's own decisions (no I/O): policies a pair applies
to a message, and every kind of plan action has words."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from reconcile_builders import (
    ENGINE,
    comment,
    context,
    conversation,
    issue,
    link,
    policy,
    view,
)

from syncer.explain import Facts, describe_action, explain_conversation
from syncer.plan import (
    Action,
    AddComment,
    AdoptComment,
    AdoptIssue,
    Conflict,
    CreateIssue,
    MarkOrphaned,
    PostLinkNote,
    RemoveComment,
    SaveSnapshot,
    Side,
    Skip,
    Snapshot,
    Untrusted,
    UpdateTicket,
)
from syncer.reconcile import matches, reconcile
from syncer.recovery import RecoveryPolicy

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def explained(pol_overrides: dict[str, object], *, private: bool) -> str:
    pol = policy(**pol_overrides)
    ctx = context(pol, private=private)
    conv = conversation(tags=("bug",))
    note = comment("m-int", body="The admin password is in the vault.", internal=True)
    conv_view, iss_view = view(conv, (note,)), view(issue())
    lk = link()
    plan = reconcile(ctx, conv_view, iss_view, lk)
    facts = Facts(pair=pol, markers=ctx.markers, conversation=conv, plan=plan, link=lk,
                  views=(conv_view, iss_view), unchanged=False, failure=None, intents=(),
                  leaks=(), recovery=RecoveryPolicy(), max_retries=10)
    return "\n".join(explain_conversation(facts, matches(pol, conv_view), NOW))


def test_an_internal_note_a_tracker_cannot_keep_private_is_not_sent() -> None:
    """A tracker without private comments: the internal note is named as not sent, and
    why; with the placeholder policy, a public placeholder goes instead."""
    skipped = explained({}, private=False)
    assert ("'The admin password is in the vault.': not copied: internal note not sent: "
            "Redmine cannot keep a comment private") in skipped
    placeholder = explained({"visibility": {"internal_to_public_tracker": "placeholder"}},
                            private=False)
    assert ("'The admin password is in the vault.': to be copied to tracker 42 as a public "
            "comment") in placeholder
    private = explained({}, private=True)
    assert ("'The admin password is in the vault.': to be copied to tracker 42 as an "
            "internal comment") in private


EVERY_ACTION: list[Action] = [
    CreateIssue.model_validate({"conversation_id": "c", "new": {
        "subject": "s", "description": "d", "marker": "rs-x"}}),
    AddComment.model_validate({"conversation_id": "c", "target": Side.TRACKER,
                               "ticket_id": "1", "source_id": "m",
                               "new": {"body": "b", "visibility": "public", "marker": "rs-y"}}),
    PostLinkNote(conversation_id="c", marker="rs-z"),
    UpdateTicket.model_validate({"conversation_id": "c", "target": Side.HELPDESK,
                                 "ticket_id": "c", "update": {"state": "closed"},
                                 "reason": "issue is closed"}),
    MarkOrphaned(conversation_id="c", reason="issue 1 was deleted"),
    SaveSnapshot(conversation_id="c", snapshot=Snapshot()),
    Skip(conversation_id="c", object_id="m", reason="why"),
    Conflict(conversation_id="c", field="assignee", helpdesk_value="a", tracker_value="b",
             winner=Side.TRACKER),
    AdoptIssue(conversation_id="c", issue_id="1"),
    AdoptComment(conversation_id="c", source_side=Side.HELPDESK, source_id="m",
                 target_id="5", visibility="internal", fingerprint="f"),
    RemoveComment(conversation_id="c", target=Side.TRACKER, ticket_id="1", comment_id="5",
                  reason="copy of an internal note is public"),
    Untrusted(conversation_id="c", object_id="7", reason="treated as a person's comment"),
]


@pytest.mark.parametrize("action", EVERY_ACTION, ids=lambda a: type(a).__name__)
def test_every_action_has_words(action: Action) -> None:
    """`plan`, `backfill --dry-run` and `explain` can word every action a plan holds."""
    words = describe_action(action)
    assert words.startswith("c: ") and len(words) > 10


def test_our_own_copy_without_a_comment_link_is_an_echo() -> None:
    """A copy the sync wrote (its marker for this conversation, by its user) whose comment
    link the state lost is still recognised: echo suppressed, never copied back."""
    pol = policy()
    ctx = context(pol)
    conv = conversation(tags=("bug",))
    source = comment("m-1", body="It fails on Safari.")
    copy = comment("9", ticket="42", body="copy", marker=ctx.markers.comment(
        conv.id, Side.HELPDESK, "m-1")).model_copy(update={"author": ENGINE})
    conv_view, iss_view = view(conv, (source,)), view(issue(), (copy,))
    lk = link()
    plan = reconcile(ctx, conv_view, iss_view, lk)
    facts = Facts(pair=pol, markers=ctx.markers, conversation=conv, plan=plan, link=lk,
                  views=(conv_view, iss_view), unchanged=False, failure=None, intents=(),
                  leaks=(), recovery=RecoveryPolicy(), max_retries=10)
    out = "\n".join(explain_conversation(facts, matches(pol, conv_view), NOW))
    assert re.search(r"tracker 9 \(public, reamaze-sync, .*\): 'copy': our copy, recognised by "
                     r"its marker and author \(echo suppressed: never copied\)", out)
    assert "'It fails on Safari.': its copy 9 is found by its marker: recorded, nothing sent" \
        in out
