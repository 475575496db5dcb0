"""Pure translation between GitLab wire models and the unified models.

* State: ``opened`` -> OPEN, ``closed`` -> CLOSED.
* Users are named by username everywhere (authors, assignees, ``whoami``); assigning
  needs the numeric id, which the connector looks up.
* Markers are hidden trailing HTML comments (``connectors.hidden_marker``): GitLab's
  Markdown drops HTML comments when rendering, and the API returns the raw source.
* A note is INTERNAL only when GitLab says so (``GlNoteWire.provably_internal``).
  System notes (label or state changes) are no comments and are left out.
* Files uploaded to the project show in a note as Markdown links to
  ``/uploads/<secret>/<name>``; they become the comment's attachments.
"""

from __future__ import annotations

import re

from connectors.gitlab.wire import GlIssueWire, GlNoteWire, GlUserWire
from connectors.hidden_marker import split_marker
from syncer.models import (
    Attachment,
    Author,
    Comment,
    Ticket,
    TicketState,
    TicketStatus,
    User,
    Visibility,
)

STATUSES = {s.code: s for s in (
    TicketStatus(code="opened", name="open", state=TicketState.OPEN),
    TicketStatus(code="closed", name="closed", state=TicketState.CLOSED))}

_UPLOAD_LINK = re.compile(r"!?\[([^\]\n]*)\]\((/uploads/[0-9a-f]{32}/[^)\s]+)\)")


def ticket_status(issue: GlIssueWire) -> TicketStatus:
    return STATUSES["closed"] if issue.state == "closed" else STATUSES["opened"]


def user_to_unified(user: GlUserWire) -> User:
    return User(id=user.username, name=user.name or user.username)


def issue_to_ticket(issue: GlIssueWire, *, web_url: str) -> Ticket:
    description, marker = (split_marker(issue.description) if issue.description is not None
                           else (None, None))
    assignees = issue.assignees if issue.assignees is not None else (
        (issue.assignee,) if issue.assignee is not None else ())
    return Ticket(
        id=str(issue.iid),
        subject=issue.title,
        description=description,
        status=ticket_status(issue),
        tags=tuple(sorted(issue.labels, key=str.lower)),
        assignee=user_to_unified(assignees[0]) if assignees else None,
        created_at=issue.created_at,
        updated_at=issue.updated_at,
        url=issue.web_url or web_url,
        data={"iid": str(issue.iid)},
        marker=marker,
        author_id=issue.author.username if issue.author is not None else None,
        raw=issue.model_dump(mode="json"),
    )


def uploads_in(body: str, project_web_url: str) -> tuple[Attachment, ...]:
    return tuple(Attachment(name=name or path.rsplit("/", 1)[-1],
                            url=project_web_url.rstrip("/") + path)
                 for name, path in _UPLOAD_LINK.findall(body))


def note_to_comment(note: GlNoteWire, ticket_id: str, project_web_url: str) -> Comment:
    body, marker = split_marker(note.body or "")
    user = note.author
    return Comment(
        id=str(note.id),
        ticket_id=ticket_id,
        body=body,
        visibility=Visibility.INTERNAL if note.provably_internal else Visibility.PUBLIC,
        author=Author(name=user.username if user else None, id=user.username if user else None,
                      is_staff=True),
        created_at=note.created_at,
        attachments=uploads_in(body, project_web_url),
        marker=marker,
        raw=note.model_dump(mode="json"),
    )
