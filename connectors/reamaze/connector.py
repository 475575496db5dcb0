"""The Re:amaze connector: conversations are tickets, messages are comments.

It speaks ``https://{brand}.reamaze.io/api/v1`` with HTTP Basic (login email + API token)
and translates through ``wire`` and ``mapping``; it decides nothing about syncing.

Idempotency keys ("markers") live where Re:amaze keeps them for us: a conversation we
create carries ``data.reamaze_sync_marker`` (findable with the ``data[...]`` list filter),
and a message we post carries ``origin_id``. Re:amaze deduplicates neither, so creates are
never blindly re-sent: after a timeout or 5xx the marker is looked up first. Message ids
and status codes are explained in ``mapping``; the change feed in ``feed``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
import structlog
from pydantic import SecretStr

from connectors import http
from connectors.base import Capabilities, CommentBatch, create_one_by_one
from connectors.reamaze import directory
from connectors.reamaze.config import ReamazeConfig
from connectors.reamaze.feed import walk_changes, walk_each
from connectors.reamaze.mapping import (
    INTERNAL,
    MARKER_DATA_KEY,
    PUBLIC,
    STATUSES,
    code_for_state,
    comments_from_wire,
    ticket_from_wire,
)
from connectors.reamaze.prefetch import MessagePrefetch
from connectors.reamaze.wire import (
    CONNECTOR,
    WireConversation,
    WireMessage,
    parse_items,
    parse_one,
)
from connectors.shared_reads import SharedPages
from syncer.errors import BadPayloadError, LeakError, RejectedError
from syncer.models import (
    REVERSE_ISSUE_DATA_KEY,
    Attachment,
    ChangePage,
    Collection,
    Comment,
    Contact,
    Cursor,
    NewComment,
    NewConversation,
    NewTicket,
    Role,
    Ticket,
    TicketState,
    TicketStatus,
    TicketUpdate,
    User,
    Visibility,
)
from syncer.secrets import register_basic_auth

log = structlog.get_logger("reamaze_sync.reamaze")
T = TypeVar("T")


class ReamazeConnector:
    name = "reamaze"
    capabilities = Capabilities(private_comments=True, edit_comments=False, labels=True,
                                assignee=True, attachments_upload=False)

    def __init__(self, api: http.ApiClient, *, brand: str, login_email: str,
                 overlap: timedelta = timedelta(seconds=120), web_base: str | None = None,
                 default_category: str | None = None,
                 feed_share_seconds: float = 0.0, files: httpx.Client | None = None) -> None:
        self.api = api
        # Attachments live on Re:amaze's file host: fetched without the API credentials.
        self.files = files or httpx.Client(timeout=60.0, follow_redirects=True)
        self.shared_pages = SharedPages(feed_share_seconds, api.clock)
        self.brand = brand
        self.login_email = login_email
        self.overlap = overlap
        self.web_base = (web_base or f"https://{brand}.reamaze.com").rstrip("/")
        self.default_category = default_category
        api.describe_auth_failure = self._auth_failure

    @classmethod
    def from_config(cls, cfg: ReamazeConfig, token: SecretStr, *,
                    transport: httpx.BaseTransport | None = None,
                    clock: http.Clock | None = None,
                    default_category: str | None = None) -> ReamazeConnector:
        secret = token.get_secret_value()
        # The token only ever leaves inside the Basic header: that is the form echoed back.
        register_basic_auth(cfg.login_email, secret)
        timeout = httpx.Timeout(cfg.http.timeout_seconds,
                                connect=min(5.0, cfg.http.timeout_seconds))
        client = http.build_http_client(
            cfg.api_base(), auth=httpx.BasicAuth(cfg.login_email, secret),
            headers={"Accept": "application/json"}, transport=transport, timeout=timeout)
        overall, writes = http.connection_budgets(cfg.http, clock)
        api = http.ApiClient(
            CONNECTOR, client, rate_limiter=overall, write_limiter=writes,
            retry=http.RetryPolicy(attempts=cfg.http.max_attempts,
                                   max_retry_after=cfg.http.max_retry_after_seconds),
            clock=clock)
        web_base = None
        if cfg.base_url is not None:
            parts = urlsplit(str(cfg.base_url))
            web_base = f"{parts.scheme}://{parts.netloc}"
        return cls(api, brand=cfg.brand, login_email=cfg.login_email,
                   overlap=timedelta(seconds=cfg.overlap_seconds), web_base=web_base,
                   default_category=default_category,
                   feed_share_seconds=cfg.feed_share_seconds,
                   files=httpx.Client(transport=transport, timeout=timeout,
                                      follow_redirects=True))

    def _auth_failure(self) -> str:
        return (f"Re:amaze refused login {self.login_email!r} for brand {self.brand!r} "
                "(check the API token and the user's API permissions)")

    # -- tickets (conversations) --------------------------------------------------------
    def ticket_url(self, ticket_id: str) -> str:
        return f"{self.web_base}/admin/conversations/{quote(ticket_id, safe='')}"

    def _path(self, slug: str) -> str:
        return "/conversations/" + quote(slug, safe="")

    def _ticket(self, raw: Any, object_id: str | None = None) -> Ticket:
        # MCP-style clients read {"conversation": {...}}; the docs show a bare object.
        if isinstance(raw, Mapping) and isinstance(raw.get("conversation"), Mapping) \
                and "slug" not in raw:
            raw = raw["conversation"]
        conv = parse_one(WireConversation, raw, object_id=object_id)
        return ticket_from_wire(conv, url=self.ticket_url(conv.slug))

    def _tickets(self, items: list[Any]) -> list[Ticket]:
        return [ticket_from_wire(c, url=self.ticket_url(c.slug))
                for c in parse_items(WireConversation, items, kind="conversation")]

    def recent_tickets(self, page: int) -> list[Ticket]:
        """One page of conversations, latest customer message first (``sort=updated``):
        what the sweep re-reads for rule matches the change feed may have missed."""
        raw = self.api.get_json("/conversations",
                                params={"filter": "all", "sort": "updated", "page": page})
        items = raw.get("conversations") if isinstance(raw, dict) else None
        return self._tickets(items if isinstance(items, list) else [])

    def list_tickets(self, filter: str = "all", tag: str | None = None,
                     category: str | None = None,
                     data: Mapping[str, str] | None = None) -> Iterator[Ticket]:
        params: dict[str, Any] = {"filter": filter}
        if tag:
            params["tag"] = tag
        if category:
            params["category"] = category
        for k, v in (data or {}).items():
            params[f"data[{k}]"] = v
        seen: set[str] = set()  # pages shift when conversations arrive mid-walk
        for items in directory.iter_raw(self.api, "/conversations", "conversations", params):
            for ticket in self._tickets(items):
                if ticket.id not in seen:
                    seen.add(ticket.id)
                    yield ticket

    def get_ticket(self, ticket_id: str) -> Ticket:
        return self._ticket(self.api.get_json(self._path(ticket_id), object_id=ticket_id),
                            ticket_id)

    def read_ticket(self, ticket_id: str) -> tuple[Ticket, list[Comment]]:
        """Two requests: Re:amaze lists messages separately from the conversation."""
        return self.get_ticket(ticket_id), self.list_comments(ticket_id)

    def create_conversation(self, subject: str, category: str, body: str, contact_email: str,
                            contact_name: str | None = None, tags: tuple[str, ...] = (),
                            status: int | None = None, data: Mapping[str, str] | None = None,
                            *, notify: bool = False, note: bool = False) -> Ticket:
        """POST /conversations on behalf of ``contact_email`` (created if unknown).

        ``note``: ask for the first message as an internal note. The reference documents
        ``visibility`` only for ``POST .../messages``, so whether this is honoured here is
        unknown: callers must not put anything in ``body`` a customer may not see."""
        user: dict[str, Any] = {"email": contact_email}
        if contact_name:
            user["name"] = contact_name
        message: dict[str, Any] = {"body": body, "suppress_notifications": not notify,
                                   "suppress_autoresolve": True}
        if note:
            message["visibility"] = INTERNAL
            message["suppress_surveys"] = True
        conv: dict[str, Any] = {
            "subject": subject, "category": category, "message": message, "user": user,
        }
        if tags:
            conv["tag_list"] = list(tags)
        if status is not None:
            conv["status"] = status
        if data:
            conv["data"] = dict(data)
        return self._ticket(self.api.send_json("POST", "/conversations", {"conversation": conv},
                                               retry_transient=False))

    def create_ticket(self, new: NewTicket) -> Ticket:
        """A conversation opened by our login user, carrying the marker in ``data``."""
        if new.state is TicketState.ON_HOLD:
            raise RejectedError("Re:amaze needs hold_until for On Hold; create, then update",
                                connector=CONNECTOR)
        category = self._category()
        ticket = http.write_once(self.api,
            lambda: self.create_conversation(
                new.subject, category, new.description, self.login_email, tags=new.tags,
                status=code_for_state(new.state) if new.state is not None else None,
                data={MARKER_DATA_KEY: new.marker}),
            lambda: self.find_ticket_by_marker(new.marker))
        if new.assignee_id:
            ticket = self.update_ticket(ticket.id, TicketUpdate(assignee_id=new.assignee_id))
        return ticket

    def open_conversation(self, new: NewConversation) -> Ticket:
        """A conversation for a contact (reverse creation): the contact is found or
        created through the Contacts API first, then the conversation is opened on its
        behalf with notifications suppressed, its first message asked to be a note, and
        the key in ``data`` (a create whose answer never came is looked up, not re-sent)."""
        if self.find_contact(new.contact_email) is None:
            self.create_contact(email=new.contact_email)
        category = new.category or self._category()
        return http.write_once(self.api,
            lambda: self.create_conversation(
                new.subject, category, new.opening, new.contact_email, tags=new.tags,
                data={MARKER_DATA_KEY: new.marker, REVERSE_ISSUE_DATA_KEY: new.issue_id},
                note=True),
            lambda: self.find_ticket_by_marker(new.marker))

    def _category(self) -> str:
        if self.default_category is None:
            channels = self.list_collections()
            emails = [c for c in channels if c.kind == "email"] or channels
            if not emails:
                raise RejectedError("brand has no channel to create conversations in",
                                    connector=CONNECTOR)
            self.default_category = emails[0].id
        return self.default_category

    def update_ticket(self, ticket_id: str, update: TicketUpdate) -> Ticket:
        conv: dict[str, Any] = {}
        if update.state is not None:
            conv["status"] = code_for_state(update.state)
            if update.state is TicketState.ON_HOLD and update.hold_until is None:
                raise RejectedError("On Hold needs hold_until", connector=CONNECTOR,
                                    object_id=ticket_id)
        if update.hold_until is not None:
            conv["hold_until"] = update.hold_until.isoformat()
        if update.tags is not None:
            conv["tag_list"] = list(update.tags)
        if update.assignee_id is not None:
            conv["assignee"] = {"email": update.assignee_id}
        if not conv:
            return self.get_ticket(ticket_id)
        raw = self.api.send_json("PUT", self._path(ticket_id), {"conversation": conv},
                                 object_id=ticket_id)
        return self._ticket(raw, ticket_id) if raw is not None else self.get_ticket(ticket_id)

    def find_ticket_by_marker(self, marker: str) -> Ticket | None:
        for ticket in self.list_tickets(data={MARKER_DATA_KEY: marker}):
            if ticket.marker == marker:
                return ticket
            if MARKER_DATA_KEY not in ticket.data:  # list items may omit data: confirm
                full = self.get_ticket(ticket.id)
                if full.marker == marker:
                    return full
        return None

    def list_statuses(self) -> list[TicketStatus]:
        return [TicketStatus(code=str(code), name=name, state=state)
                for code, (name, state) in STATUSES.items()]

    # -- comments (messages) --------------------------------------------------------------
    def list_comments(self, ticket_id: str) -> list[Comment]:
        messages: list[WireMessage] = []
        # The HTML is what keeps a message's lists, links and code (render.py).
        for items in directory.iter_raw(self.api, self._path(ticket_id) + "/messages",
                                        "messages", {"include": "original_body"}):
            messages.extend(parse_items(WireMessage, items, kind="message"))
        return comments_from_wire(ticket_id, messages)

    def message_prefetch(self, tags: Sequence[str]) -> MessagePrefetch:
        """The messages of the conversations carrying ``tags``, read across conversations
        (``GET /messages?tag=``) as a backfill asks for them."""
        return MessagePrefetch(lambda p: self.api.get_json("/messages", params=p), tags)

    def find_comment_by_marker(self, ticket_id: str, marker: str) -> Comment | None:
        """Our message with this marker (``origin_id``), posted by our login user."""
        me = self.whoami()
        for comment in self.list_comments(ticket_id):
            if comment.marker == marker and (comment.author.id or "").casefold() == me:
                return comment
        return None

    def update_comment(self, ticket_id: str, comment_id: str, body: str) -> Comment:
        raise RejectedError("Re:amaze's API cannot edit a message", connector=CONNECTOR,
                            object_id=f"{ticket_id}#{comment_id}")

    def delete_comment(self, ticket_id: str, comment_id: str) -> None:
        raise RejectedError("Re:amaze's API cannot delete or hide a message; remove it in "
                            "the Re:amaze app", connector=CONNECTOR,
                            object_id=f"{ticket_id}#{comment_id}")

    def whoami(self) -> str:
        return self.login_email.casefold()

    def create_comments(self, ticket_id: str, news: Sequence[NewComment]) -> CommentBatch:
        return create_one_by_one(self.create_comment, ticket_id, news)

    def create_comment(self, ticket_id: str, new: NewComment) -> Comment:
        internal = new.visibility is Visibility.INTERNAL
        notify = new.notify_customer and not internal
        msg: dict[str, Any] = {
            "body": new.body,
            "visibility": INTERNAL if internal else PUBLIC,
            "origin_id": new.marker,
            "suppress_notifications": not notify,
            "suppress_autoresolve": True,
            "suppress_surveys": not notify,
        }
        urls = [a.url for a in new.attachments if a.url]
        if len(urls) < len(new.attachments):
            log.warning("reamaze_attachment_without_url_skipped", slug=ticket_id,
                        skipped=len(new.attachments) - len(urls))
        if len(urls) == 1:
            msg["attachment"] = urls[0]
        elif urls:
            msg["attachments"] = urls
        def post() -> Comment:
            raw = self.api.send_json("POST", self._path(ticket_id) + "/messages",
                                     {"message": msg}, object_id=ticket_id,
                                     retry_transient=False)
            return self._created_comment(ticket_id, raw, new.marker)

        comment = http.write_once(self.api, post, lambda: self.find_comment_by_marker(ticket_id,
                                                                            new.marker))
        if internal and comment.visibility is not Visibility.INTERNAL:
            raise LeakError("an internal note came back public, and Re:amaze cannot delete "
                            "it; remove it in the Re:amaze app", removed=False,
                            ticket_id=ticket_id, comment_id=comment.id, connector=CONNECTOR,
                            object_id=ticket_id)
        return comment

    def _created_comment(self, ticket_id: str, raw: Any, marker: str) -> Comment:
        if isinstance(raw, Mapping) and isinstance(raw.get("message"), Mapping):
            raw = raw["message"]
        try:
            wire = parse_one(WireMessage, raw, object_id=ticket_id)
        except BadPayloadError:
            # The message exists; its marker lets us read it back instead of failing.
            found = self.find_comment_by_marker(ticket_id, marker)
            if found is None:
                raise
            return found
        if wire.origin_id != marker:
            log.warning("reamaze_marker_not_echoed", slug=ticket_id)
        return comments_from_wire(ticket_id, [wire])[0]

    # -- change feed -----------------------------------------------------------------------
    def _changes_page(self, p: dict[str, Any]) -> Any:
        """One page of the change listing (``p``: its page and any listing filter)."""
        return self.api.get_json("/conversations",
                                 params={"filter": "all", "sort": "changed", **p})

    def iter_changes(self, since: Cursor | None) -> Iterator[ChangePage]:
        return walk_changes(self._changes_page, self._tickets, since, self.overlap)

    def iter_changes_where(self, since: Cursor | None, *, tags: Sequence[str] = (),
                           channels: Sequence[str] = ()) -> Iterator[ChangePage]:
        """The changes of the conversations with one of ``tags`` or in one of ``channels``,
        read with the listing's own ``tag`` and ``category`` filters (one walk each)."""
        filters = [{"tag": t} for t in tags] + [{"category": c} for c in channels]
        return walk_each(self._changes_page, self._tickets, since, self.overlap, filters)

    def iter_changes_for(self, reader: str, since: Cursor | None) -> Iterator[ChangePage]:
        """The change feed as pair ``reader`` walks it, sharing pages with the brand's other
        pairs (``connectors.shared_reads``)."""
        previous = self.shared_pages.begin_walk(reader)

        def fetch(p: dict[str, Any]) -> Any:
            return self.shared_pages.get(tuple(sorted((k, str(v)) for k, v in p.items())),
                                         lambda: self._changes_page(p),
                                         reader=reader, newer_than=previous)

        return walk_changes(fetch, self._tickets, since, self.overlap)

    # -- attachments -------------------------------------------------------------------------
    def fetch_attachment(self, attachment: Attachment, max_bytes: int) -> bytes:
        """A message attachment's bytes from Re:amaze's file host (never with the API
        credentials), refused past ``max_bytes`` before or while it is read."""
        name = attachment.name
        url = httpx.URL(attachment.url or "")
        if url.scheme not in ("https", "http") or not url.host:
            raise RejectedError("the attachment has no URL to fetch", connector=CONNECTOR,
                                object_id=name)
        if attachment.size is not None and attachment.size > max_bytes:
            raise RejectedError(f"larger than {max_bytes // (1024 * 1024)} MB",
                                connector=CONNECTOR, object_id=name)
        data = bytearray()
        try:
            with self.files.stream("GET", url) as response:
                if response.status_code != 200:
                    raise RejectedError(f"the file host answered {response.status_code}",
                                        connector=CONNECTOR, object_id=name)
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > max_bytes:
                        raise RejectedError(f"larger than {max_bytes // (1024 * 1024)} MB",
                                            connector=CONNECTOR, object_id=name)
        except httpx.HTTPError as exc:
            raise RejectedError(f"could not be fetched ({type(exc).__name__})",
                                connector=CONNECTOR, object_id=name) from None
        return bytes(data)

    # -- people and places ------------------------------------------------------------------
    def list_contacts(self, q: str | None = None,
                      data: Mapping[str, str] | None = None) -> Iterator[Contact]:
        return directory.list_contacts(self.api, q, data)

    def get_contact(self, identifier: str) -> Contact:
        return directory.get_contact(self.api, identifier)

    def find_contact(self, email: str) -> Contact | None:
        return directory.find_contact(self.api, email)

    def create_contact(self, *, email: str | None = None, name: str | None = None,
                       mobile: str | None = None, external_id: str | None = None,
                       data: Mapping[str, str] | None = None) -> Contact:
        return directory.create_contact(self.api, email=email, name=name, mobile=mobile,
                                        external_id=external_id, data=data)

    def update_contact(self, identifier: str, *, name: str | None = None,
                       friendly_name: str | None = None, data: Mapping[str, str] | None = None,
                       identifier_type: str | None = None) -> Contact:
        return directory.update_contact(self.api, identifier, name=name,
                                        friendly_name=friendly_name, data=data,
                                        identifier_type=identifier_type)

    def list_users(self) -> list[User]:
        return directory.list_staff(self.api)

    def list_roles(self) -> list[Role]:
        return directory.roles_of(self.list_users())

    def list_collections(self) -> list[Collection]:
        return directory.list_channels(self.api)

    def check(self) -> str:
        raw = self.api.get_json("/staff", params={"page": 1})
        staff = raw.get("staff") if isinstance(raw, Mapping) else None
        if not isinstance(staff, list):
            raise BadPayloadError("GET /staff did not return a staff list", connector=CONNECTOR)
        me = next((s for s in staff if isinstance(s, Mapping)
                   and str(s.get("email", "")).lower() == self.login_email.lower()), None)
        who = f" ({me['name']})" if me is not None and isinstance(me.get("name"), str) else ""
        return f"brand {self.brand} as {self.login_email}{who}"
