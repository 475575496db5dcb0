"""Text the engine writes: issue titles and bodies, attributed comment copies, notes.

Pure functions. Copied text keeps every character (no scrubbing) but mentions are
neutralised so a copy never pings an unrelated account on the other side.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from syncer.config import PairConfig
from syncer.models import Comment, Ticket

_MENTION = re.compile(r"(?<![\w`])@(?=[A-Za-z0-9_])")


def neutralise_mentions(text: str) -> str:
    """`@name` -> `@\u200bname`: still readable, no longer a mention on either side."""
    return _MENTION.sub("@\u200b", text)


def issue_title(policy: PairConfig, conversation: Ticket) -> str:
    channel = conversation.collection.name if conversation.collection else ""
    title = policy.title_template.format(subject=conversation.subject, slug=conversation.id,
                                         channel=channel).strip()
    return (title or conversation.id)[:250]


def issue_description(policy: PairConfig, conversation: Ticket) -> str:
    lines = [f"Re:amaze conversation: {conversation.url or conversation.id}"]
    if conversation.collection is not None:
        lines.append(f"Channel: {conversation.collection.name}")
    contact = conversation.contact
    if policy.visibility.include_customer_pii and contact is not None:
        who = " ".join(x for x in (contact.name, f"<{contact.email}>" if contact.email else None)
                       if x)
        if who:
            lines.append(f"Customer: {who}")
    if conversation.tags:
        lines.append("Tags: " + ", ".join(conversation.tags))
    lines.append("")
    lines.append("Messages from the conversation follow as notes.")
    # Channel, customer and tag names are free text too: none of them may ping anyone.
    return neutralise_mentions("\n".join(lines))


def _when(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def helpdesk_comment_to_tracker(policy: PairConfig, comment: Comment) -> str:
    if comment.author.is_staff:
        who = comment.author.name or comment.author.email or "Staff"
        role = "staff"
    else:
        who = (comment.author.name or comment.author.email or "Customer"
               ) if policy.visibility.include_customer_pii else "Customer"
        role = "customer"
    kind = "internal note" if comment.visibility == "internal" else "message"
    header = f"**{who}** ({role}) — Re:amaze {kind}, {_when(comment.created_at)}"
    return neutralise_mentions(f"{header}\n\n{comment.body}")  # author names too


def tracker_comment_to_helpdesk(tracker_name: str, issue: Ticket, comment: Comment) -> str:
    who = comment.author.name or comment.author.email or "someone"
    return neutralise_mentions(f"{who} commented on {tracker_name} issue #{issue.id}:\n\n"
                               f"{comment.body}")


def placeholder_note(policy: PairConfig) -> str:
    return policy.visibility.placeholder_text


def orphan_note(tracker_name: str, issue_id: str) -> str:
    return (f"The linked {tracker_name} issue #{issue_id} no longer exists; "
            "reamaze-sync stopped syncing this conversation.")


def close_reply(policy: PairConfig, conversation: Ticket, issue: Ticket) -> str:
    return policy.status.close_reply_template.format(
        subject=conversation.subject, issue_id=issue.id, issue_url=issue.url or "")
