"""Pure translation between GitHub wire models and the unified models.

* State: ``open`` -> OPEN, ``closed`` -> CLOSED; ``state_reason`` is kept in the status
  name (``closed (not_planned)``) and in ``Ticket.data``.
* Users are named by login everywhere (authors, assignees, ``whoami``): GitHub assigns by
  login, and a staff map names logins.
* Markers are hidden trailing HTML comments (``connectors.hidden_marker``): GitHub's
  Markdown renderer drops HTML comments, and the API returns the raw source.
* Every comment is PUBLIC: GitHub has no private comments.
* Pull requests share the issue numbering and listings; they are not issues here.
"""

from __future__ import annotations

from connectors.github.wire import GhCommentWire, GhIssueWire, GhUserWire
from connectors.hidden_marker import split_marker
from syncer.models import Author, Comment, Ticket, TicketState, TicketStatus, User, Visibility

# Every state an issue can be in, by ``TicketStatus.code`` (``duplicate`` is set by people
# marking an issue a duplicate; the engine never closes one that way).
STATUSES = {s.code: s for s in (
    TicketStatus(code="open", name="open", state=TicketState.OPEN),
    *(TicketStatus(code=f"closed:{r}", name=f"closed ({r})", state=TicketState.CLOSED)
      for r in ("completed", "not_planned", "duplicate")))}


def ticket_status(issue: GhIssueWire) -> TicketStatus:
    if issue.state != "closed":
        return STATUSES["open"]
    reason = issue.state_reason or "completed"
    return STATUSES.get(f"closed:{reason}") or TicketStatus(  # a reason GitHub adds later
        code=f"closed:{reason}", name=f"closed ({reason})", state=TicketState.CLOSED)


def user_to_unified(user: GhUserWire) -> User:
    return User(id=user.login, name=user.name or user.login)


def issue_to_ticket(issue: GhIssueWire, *, web_url: str) -> Ticket:
    description, marker = (split_marker(issue.body) if issue.body is not None
                           else (None, None))
    assignees = issue.assignees if issue.assignees is not None else (
        (issue.assignee,) if issue.assignee is not None else ())
    data = {"number": str(issue.number)}
    if issue.state_reason:
        data["state_reason"] = issue.state_reason
    return Ticket(
        id=str(issue.number),
        subject=issue.title,
        description=description,
        status=ticket_status(issue),
        tags=tuple(sorted(issue.label_names(), key=str.lower)),
        assignee=user_to_unified(assignees[0]) if assignees else None,
        created_at=issue.created_at,
        updated_at=issue.updated_at,
        url=issue.html_url or web_url,
        data=data,
        marker=marker,
        author_id=issue.user.login if issue.user is not None else None,
        raw=issue.model_dump(mode="json"),
    )


def comment_to_unified(comment: GhCommentWire, ticket_id: str) -> Comment:
    body, marker = split_marker(comment.body or "")
    user = comment.user
    return Comment(
        id=str(comment.id),
        ticket_id=ticket_id,
        body=body,
        visibility=Visibility.PUBLIC,
        author=Author(name=user.login if user else None, id=user.login if user else None,
                      is_staff=True),
        created_at=comment.created_at,
        marker=marker,
        raw=comment.model_dump(mode="json"),
    )
