"""Pure translation between Redmine wire models and the unified models.

Status mapping: Redmine has no "pending" or "on hold"; a status whose ``is_closed`` flag is
set maps to ``TicketState.CLOSED`` and every other status to ``OPEN``. The status name is
kept in ``TicketStatus.name`` and its id in ``TicketStatus.code``.

Markers (``connectors.hidden_marker``): our idempotency key is embedded as a trailing HTML
comment on its own line, ``<!-- reamaze-sync:rs-… -->``. The API returns the raw source,
so it comes back verbatim and ``description=~`` can search for it. Checked on Redmine
5.0.4: the comment is not shown in the rendered page under either ``common_mark`` or
``textile`` (both drop HTML comments).
Only a marker on the *last* line counts: Redmine's "Quote" button copies a note as
``> …`` lines.
"""

from __future__ import annotations

from connectors.hidden_marker import (
    MARKER_TOKEN_RE,
    check_marker,
    embed_marker,
    marker_tag,
    normalise_newlines,
    split_marker,
)
from connectors.redmine.wire import AttachmentWire, Issue, Journal, StatusRef, UserWire
from syncer.models import (
    Attachment,
    Author,
    Collection,
    Comment,
    Ticket,
    TicketState,
    TicketStatus,
    User,
    Visibility,
    custom_field_key,
)


def issue_has_marker(issue: Issue, marker: str) -> bool:
    return bool(issue.description) and split_marker(issue.description or "")[1] == marker


def ticket_state(status: StatusRef) -> TicketState:
    return TicketState.CLOSED if status.is_closed else TicketState.OPEN


def ticket_status(status: StatusRef) -> TicketStatus:
    return TicketStatus(code=str(status.id), name=status.name, state=ticket_state(status))


def issue_to_ticket(issue: Issue, *, base_url: str) -> Ticket:
    description: str | None = None
    marker: str | None = None
    if issue.description is not None:
        description, marker = split_marker(issue.description)
    data = {"is_private": "true" if issue.is_private else "false"}
    if issue.tracker is not None:
        data["tracker_id"] = str(issue.tracker.id)
        data["tracker"] = issue.tracker.name
    if issue.priority is not None:
        data["priority"] = issue.priority.name
    if issue.author is not None:
        data["author_id"] = str(issue.author.id)
    for field in issue.custom_fields:
        if isinstance(field.value, str) and field.value:
            data[custom_field_key(field.id)] = field.value
    return Ticket(
        id=str(issue.id),
        subject=issue.subject,
        description=description,
        status=ticket_status(issue.status),
        assignee=(User(id=str(issue.assigned_to.id), name=issue.assigned_to.name)
                  if issue.assigned_to is not None else None),
        collection=(Collection(id=str(issue.project.id), name=issue.project.name, kind="project")
                    if issue.project is not None else None),
        created_at=issue.created_on,
        updated_at=issue.updated_on,
        url=f"{base_url.rstrip('/')}/issues/{issue.id}",
        data=data,
        marker=marker,
        author_id=str(issue.author.id) if issue.author is not None else None,
        raw=issue.model_dump(mode="json", exclude={"journals", "attachments"}),
    )


def attachment_to_unified(att: AttachmentWire) -> Attachment:
    return Attachment(name=att.filename, content_type=att.content_type, size=att.filesize,
                      url=att.content_url)


def journal_to_comment(journal: Journal, issue_id: str,
                       attachments: dict[str, AttachmentWire] | None = None) -> Comment | None:
    """A journal is a comment only when it carries a note; pure field changes are not."""
    if not journal.has_note or journal.notes is None:
        return None
    body, marker = split_marker(journal.notes)
    files = attachments or {}
    atts = tuple(
        attachment_to_unified(files[d.name]) if d.name in files
        else Attachment(name=d.new_value or d.name)
        for d in journal.details
        if d.property == "attachment" and d.new_value is not None
    )
    user = journal.user
    return Comment(
        id=str(journal.id),
        ticket_id=issue_id,
        body=body,
        visibility=Visibility.INTERNAL if journal.private_notes else Visibility.PUBLIC,
        author=Author(name=user.name if user else None, id=str(user.id) if user else None,
                      is_staff=True),
        created_at=journal.created_on,
        attachments=atts,
        marker=marker,
        raw=journal.model_dump(mode="json"),
    )


def issue_comments(issue: Issue) -> list[Comment]:
    files = {str(a.id): a for a in issue.attachments or ()}
    comments = (journal_to_comment(j, str(issue.id), files)
                for j in sorted(issue.journals or (), key=lambda j: (j.created_on, j.id)))
    return [c for c in comments if c is not None]


def user_to_unified(user: UserWire) -> User:
    return User(id=str(user.id), name=user.display_name, email=user.mail)


__all__ = ["MARKER_TOKEN_RE", "check_marker", "embed_marker", "marker_tag", "normalise_newlines",
           "split_marker"]
