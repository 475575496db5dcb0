"""Text the engine writes: issue titles and bodies, attributed comment copies, notes.

Pure functions. Copied text keeps every character (no scrubbing) but mentions are
neutralised so a copy never pings an unrelated account on the other side, and text from
outside that goes to the tracker (message bodies, author, customer, channel and tag names)
is escaped for the tracker's markup (``syncer.markup``) so it shows as written and cannot
hide, restyle or embed anything. The engine's own words around it keep their markup.

A message that came with HTML (Re:amaze's ``original_body``) is copied with its structure:
paragraphs, line breaks, lists, links, code, quotes, bold and italic are written in the
tracker's markup from the parsed document, each text run escaped the same way
(``syncer.htmldoc``, ``syncer.richtext``). Without HTML the body is escaped as plain text.
A tracker comment goes to Re:amaze as readable text, its markup rendered away
(``syncer.plaintext``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

from syncer.config import PairConfig
from syncer.htmldoc import parse_html
from syncer.markup import Markup, escape, strong
from syncer.models import Attachment, Comment, Ticket
from syncer.plaintext import markup_to_text
from syncer.richtext import Target, write

# Redmine's own rule (lib/redmine/acts/mentionable.rb): an @ at a line start or after a
# non-word character, followed by a login character. Its \W is ASCII-only, so "café@bob"
# mentions bob, and it scans the raw text, so code spans give no shelter. An @ after an
# ASCII letter, digit or underscore (carol@example.com) is never a mention and is left as is.
_MENTION = re.compile(r"(?<![A-Za-z0-9_])@(?=[A-Za-z0-9_.@-])")


def neutralise_mentions(text: str) -> str:
    """`@name` -> `@\u200bname`: still readable, no longer a mention on either side."""
    return _MENTION.sub("@\u200b", text)


def issue_title(policy: PairConfig, conversation: Ticket) -> str:
    channel = conversation.collection.name if conversation.collection else ""
    title = policy.title_template.format(subject=conversation.subject, slug=conversation.id,
                                         channel=channel).strip()
    return (title or conversation.id)[:250]


# Trackers cap an issue description: GitHub at 65,536 characters, Redmine on MySQL at a
# TEXT column's 65,535 bytes. Counted in UTF-8 bytes with CRLF line ends (what Redmine
# stores), which bounds the character count too; the rest is headroom for the marker line
# the connector appends. Messages that would not fit go as notes.
DESCRIPTION_MAX_BYTES = 60_000
_ENTRY_GAP = "\n\n"


def description_size(text: str) -> int:
    return len(text.replace("\n", "\r\n").encode("utf-8"))


def _plural(n: int, one: str) -> str:
    return f"{n} {one}" if n == 1 else f"{n} {one}s"


def issue_description(policy: PairConfig, conversation: Ticket,
                      transcript: Sequence[Comment] = (), *, markup: Markup,
                      with_attachments: int = 0, past_limit: int = 0) -> str:
    """The issue body; ``transcript`` holds the public messages written into it, and the
    counts say how many other public messages were left to notes, and why."""
    lines = [f"Re:amaze conversation: {conversation.url or conversation.id}"]
    if conversation.collection is not None:
        lines.append(f"Channel: {escape(markup, conversation.collection.name)}")
    contact = conversation.contact
    if policy.visibility.include_customer_pii and contact is not None:
        who = " ".join(x for x in (contact.name, f"<{contact.email}>" if contact.email else None)
                       if x)
        if who:
            lines.append(f"Customer: {escape(markup, who)}")
    if conversation.tags:
        lines.append("Tags: " + ", ".join(escape(markup, t) for t in conversation.tags))
    lines.append("")
    if not transcript:
        lines.append("Messages from the conversation follow as notes.")
        # Channel, customer and tag names are free text too: none of them may ping anyone.
        return neutralise_mentions("\n".join(lines))
    lines.append(f"Transcript of the conversation ({_plural(len(transcript), 'message')}):")
    lines.append("")
    lines.append(_ENTRY_GAP.join(helpdesk_comment_to_tracker(policy, c, markup=markup)
                                 for c in transcript))
    lines.append("")
    # The closing line also keeps a message body off the description's last line, where a
    # connector looks for its marker.
    left = [x for x in (f"{_plural(with_attachments, 'message')} with attachments"
                        if with_attachments else "",
                        f"{_plural(past_limit, 'message')} past the description size limit"
                        if past_limit else "") if x]
    lines.append("End of transcript. " + (f"Sent as notes instead: {', '.join(left)}. "
                                          if left else "") + "Later messages follow as notes.")
    return neutralise_mentions("\n".join(lines))


def transcript_description(policy: PairConfig, conversation: Ticket,
                           candidates: Sequence[Comment], *, markup: Markup,
                           with_attachments: int = 0) -> tuple[str, int]:
    """The description holding as many of ``candidates`` (in order) as fit the size cap,
    and how many that is: always a prefix, so what goes as notes continues in order."""
    def render(k: int) -> str:
        return issue_description(policy, conversation, candidates[:k], markup=markup,
                                 with_attachments=with_attachments,
                                 past_limit=len(candidates) - k)

    # Estimated entry by entry (rendering every prefix would be quadratic), then checked.
    used = description_size(render(0)) + description_size(
        f"Transcript of the conversation ({len(candidates)} messages):\n\n\n"
        f"End of transcript. Sent as notes instead: {len(candidates)} messages past the "
        "description size limit, ")
    k = 0
    for c in candidates:
        used += description_size(helpdesk_comment_to_tracker(policy, c, markup=markup)
                                 + _ENTRY_GAP)
        if used > DESCRIPTION_MAX_BYTES:
            break
        k += 1
    while k > 0 and description_size(render(k)) > DESCRIPTION_MAX_BYTES:
        k -= 1
    return render(k), k


def _when(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def helpdesk_comment_to_tracker(policy: PairConfig, comment: Comment, *,
                                markup: Markup) -> str:
    # Names are stripped: emphasis does not open or close next to a space in either syntax.
    if comment.author.is_staff:
        who = (comment.author.name or "").strip() or comment.author.email or "Staff"
        role = "staff"
    else:
        who = ((comment.author.name or "").strip() or comment.author.email or "Customer"
               ) if policy.visibility.include_customer_pii else "Customer"
        role = "customer"
    kind = "internal note" if comment.visibility == "internal" else "message"
    header = (f"{strong(markup, escape(markup, who))} ({role}) — Re:amaze {kind}, "
              f"{_when(comment.created_at)}")
    body = message_body(markup, comment)
    files = attachment_lines(comment.attachments, markup)
    return neutralise_mentions(f"{header}\n\n{body}{files}")  # author names too


def message_body(markup: Markup, comment: Comment) -> str:
    """A Re:amaze message's text as written for ``markup``: from its HTML when it has
    some that shows anything, else its plain body escaped."""
    if comment.body_html:
        target: Target = "text" if markup == "plain" else markup
        written = write(target, parse_html(comment.body_html))
        if written.strip():
            return written
    return escape(markup, comment.body)


_SAFE_URL = re.compile(r"https?://[^\s<>\"'`\\]+")


def _size(n: int | None) -> str:
    if n is None:
        return ""
    return f" ({n / (1024 * 1024):.1f} MB)" if n >= 1024 * 1024 else f" ({max(1, n // 1024)} KB)"


def attachment_lines(attachments: Sequence[Attachment], markup: Markup) -> str:
    """One line per file of the message: its name, size and where it is (a link the
    tracker turns into one by itself; only a plain http(s) URL is written). A tracker that
    takes uploads gets the file attached too, and the note says when one was refused."""
    if not attachments:
        return ""
    lines = []
    for a in attachments:
        where = f": {a.url}" if a.url and _SAFE_URL.fullmatch(a.url) else " (no link)"
        lines.append(f"* {escape(markup, a.name)}{_size(a.size)}{where}")
    return "\n\nAttachments:\n\n" + "\n".join(lines)


def tracker_comment_to_helpdesk(tracker_name: str, issue: Ticket, comment: Comment, *,
                                markup: Markup, files: Sequence[Attachment] = (),
                                for_customer: bool = False) -> str:
    """``files``: the note's attachments Re:amaze cannot fetch, named one a line."""
    who = comment.author.name or comment.author.email or "someone"
    text = (f"{who} commented on {tracker_name} issue #{issue.id}:\n\n"
            f"{markup_to_text(markup, comment.body)}")
    lines = [file_line(tracker_name, issue, a, for_customer=for_customer) for a in files]
    return neutralise_mentions("\n\n".join([text, "\n".join(lines)]) if lines else text)


def file_size(size: int | None) -> str:
    if size is None:
        return "size unknown"
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def file_line(tracker_name: str, issue: Ticket, a: Attachment, *,
              for_customer: bool) -> str:
    """A file Re:amaze cannot take (the tracker wants a login to hand it out). A customer
    reply names it only: the tracker's address is for staff."""
    what = f"{a.name} ({file_size(a.size)})"
    if for_customer:
        return f"Attached on {tracker_name}, not sent: {what}"
    where = a.url or issue.url or f"{tracker_name} issue #{issue.id}"
    return f"Attached on {tracker_name} (needs a {tracker_name} login): {what} {where}"


def tracker_edit_note(tracker_name: str, issue: Ticket, comment: Comment, *,
                      markup: Markup) -> str:
    """Re:amaze messages cannot be edited: the new text goes as a note of its own."""
    who = comment.author.name or comment.author.email or "someone"
    return neutralise_mentions(f"Note {comment.id} by {who} on {tracker_name} issue "
                               f"#{issue.id} was edited; it now reads:\n\n"
                               f"{markup_to_text(markup, comment.body)}")


def tracker_delete_note(tracker_name: str, issue_id: str, comment_id: str) -> str:
    return (f"Note {comment_id} on {tracker_name} issue #{issue_id} was deleted on "
            f"{tracker_name}; its copy here stays (Re:amaze messages cannot be deleted).")


def placeholder_note(policy: PairConfig) -> str:
    return policy.visibility.placeholder_text


def orphan_note(tracker_name: str, issue_id: str) -> str:
    return (f"The linked {tracker_name} issue #{issue_id} no longer exists; "
            "reamaze-sync stopped syncing this conversation.")


def close_reply(policy: PairConfig, conversation: Ticket, issue: Ticket) -> str:
    return policy.status.close_reply_template.format(
        subject=conversation.subject, issue_id=issue.id, issue_url=issue.url or "")
