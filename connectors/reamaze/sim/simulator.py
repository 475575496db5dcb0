"""A stateful, in-memory Re:amaze API: ``ReamazeSimulator().handle(httpx.Request)``.

Tests use it through ``httpx.MockTransport(sim.handle)``; the demo and benchmarks serve it
with ``connectors.loopback.LoopbackServer``. It follows shared/reamaze-api.md:

* Basic auth with the configured login email + API token, else 403 ``{"error": ...}``;
  ``Accept: application/json`` or a ``.json`` suffix, else 406; a ``*.reamaze.io`` /
  ``*.reamaze.com`` host must name the brand, else 404 (other hosts, e.g. loopback, are
  accepted); unknown paths, slugs and contacts are 404 ``{"error": ...}``.
* Lists are pages of 30 with ``page_size/page_count/total_count``; a page past the end is
  an empty list with the same counters. ``GET /channels`` has no page fields (GO model).
* ``GET /conversations``: ``filter`` (default hides Archived; ``all``, ``open``,
  ``archived``, ``unassigned``), ``sort`` (default newest created first — the docs say
  "by creation time" without a direction; ``updated`` = last customer message, newest
  first; ``changed`` = any change, newest first), ``tag`` (comma-separated, any of them),
  ``category``, ``data[key]=value``, ``for``, ``origin``, ``start_date``/``end_date``.
  ``data`` is rendered on single reads only.
* Messages list newest first (as DEX observed). Writes accept visibility 0/1 (2 → 422),
  the ``message`` wrapper or an unwrapped body (WordPress plugin), and both
  ``suppress_notification`` and ``suppress_notifications``.
* Validation failures are 422 ``{"errors": {field: [messages]}}``; an undecodable JSON
  body is 400. Creates answer 201 (the docs do not say 200 or 201).

Data rules and seeding helpers live in ``state``; fault injection in ``connectors.simfaults``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from connectors.reamaze.sim.directory import DirectoryRoutes
from connectors.reamaze.sim.faults import MinuteWindow, RequestRecord, error_body
from connectors.reamaze.sim.http import (
    BadJson,
    Invalid,
    error,
    json_response,
    page_of,
    read_body,
)
from connectors.reamaze.sim.state import (
    ORIGIN_API,
    ORIGIN_NAMES,
    Now,
    SimConversation,
    SimMessage,
)
from connectors.reamaze.sim.validate import (
    parse_when,
    validate_conversation_write,
    validate_message_write,
)
from connectors.simfaults import Faults

API_PREFIX = "/api/v1"
Route = tuple[str, re.Pattern[str], Callable[..., httpx.Response]]


class ReamazeSimulator(DirectoryRoutes):
    def __init__(self, *, brand: str = "acme", login_email: str = "bot@acme.example",
                 token: str = "sim-token", login_name: str = "Sync Bot",
                 clock: Now | None = None, sleep: Callable[[float], None] = time.sleep,
                 default_channel: bool = True) -> None:
        super().__init__(brand=brand, clock=clock)
        self.login_email = login_email
        self.token = token
        self.faults = Faults(error_body)
        self.requests: list[RequestRecord] = []
        self.before_request: list[Callable[[httpx.Request], None]] = []
        self.sleep = sleep
        self._window: MinuteWindow | None = None
        # Re:amaze's documented list item has no ``updated_at`` (reference §5.1, [S] only):
        # set this to serve list items without it and prove the feed does not need it.
        self.list_items_without_updated_at = False
        # ``message_count`` is [S] too (reference §6): "missing" serves items without it,
        # "public" counts only the messages a customer sees (internal notes left out);
        # the engine must stay correct with either.
        self.message_count: str = "all"
        # The brand-wide ``GET /messages``: its order is [S, unverified] (newest first by one
        # source) and its ``tag`` filter is [C]; "oldest" serves it oldest first, and
        # ``messages_listing_ignores_tag`` every message of the brand, to prove a backfill
        # reading it stays correct either way.
        self.messages_listing_order: str = "newest"
        self.messages_listing_ignores_tag = False
        self.add_staff(login_email, login_name, role={
            "id": 1, "name": "Administrator", "admin?": True,
            "permissions": {"manage_staff?": True, "reply_to_customers?": True,
                            "access_reports?": True}})
        if default_channel:
            self.add_channel("support", "Support", f"support@{brand}.example", channel=1)
        self.routes: list[Route] = [
            ("GET", re.compile(r"/conversations"), self._list_conversations),
            ("POST", re.compile(r"/conversations"), self._create_conversation),
            ("GET", re.compile(r"/conversations/([^/]+)"), self._get_conversation),
            ("PUT", re.compile(r"/conversations/([^/]+)"), self._update_conversation),
            ("GET", re.compile(r"/conversations/([^/]+)/messages"), self._list_messages),
            ("POST", re.compile(r"/conversations/([^/]+)/messages"), self._create_message),
            ("GET", re.compile(r"/messages"), self._list_all_messages),
            *self.directory_routes(),
        ]

    # -- test helpers ----------------------------------------------------------------------
    def rate_limit(self, per_minute: int | None) -> None:
        """Answer 429 + Retry-After beyond ``per_minute`` requests (None: unlimited)."""
        with self.lock:
            self._window = MinuteWindow(per_minute) if per_minute else None

    def calls(self, method: str | None = None, path_prefix: str = "") -> list[RequestRecord]:
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and r.path.startswith(path_prefix)]

    # -- HTTP entry point --------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        for hook in list(self.before_request):
            hook(request)
        def dispatch() -> httpx.Response:
            with self.lock:
                return self._dispatch(request)

        try:
            response, _rule = self.faults.apply(request, dispatch, self.sleep)
        except httpx.ReadTimeout:
            self._record(request, None)
            raise
        self._record(request, response.status_code)
        return response

    def _record(self, request: httpx.Request, status: int | None) -> None:
        body: Any = None
        if request.method in ("POST", "PUT") and request.content:
            try:
                body = json.loads(request.content)
            except (UnicodeDecodeError, json.JSONDecodeError):
                body = None
        with self.lock:
            self.requests.append(RequestRecord(request.method, request.url.path,
                                               dict(request.url.params.multi_items()), status,
                                               body))

    def _dispatch(self, request: httpx.Request) -> httpx.Response:
        if self._window is not None:
            wait = self._window.admit(self.now())
            if wait is not None:
                return httpx.Response(
                    429, json={"error": "Rate limit exceeded"},
                    headers={"Retry-After": MinuteWindow.retry_after_header(wait)})
        host = request.url.host
        if host.endswith((".reamaze.io", ".reamaze.com")) and host.split(".")[0] != self.brand:
            return error(404, "Brand not found")
        if request.url.path.startswith("/attachments/"):
            return self._hosted_file(request)
        if not self._authorized(request.headers.get("authorization", "")):
            return error(403, "Invalid login credentials")
        path = request.url.path
        if not path.startswith(API_PREFIX + "/"):
            return error(404, "Not found")
        path = path[len(API_PREFIX):]
        if path.endswith(".json"):
            path = path[:-5]
        elif "application/json" not in request.headers.get("accept", ""):
            return httpx.Response(406, text="Not Acceptable: send Accept: application/json")
        params = dict(request.url.params.multi_items())
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(path)
            if match and method == request.method:
                try:
                    return handler(request, params, *match.groups())
                except Invalid as exc:
                    return json_response(422, {"errors": exc.errors})
                except BadJson:
                    return error(400, "Invalid JSON in request body")
        return error(404, "Not found")

    def _hosted_file(self, request: httpx.Request) -> httpx.Response:
        """An attachment's bytes, from the file host: no credentials asked (or wanted)."""
        found = self.files.get(request.url.path) if request.method == "GET" else None
        if found is None:
            return error(404, "Not found")
        data, content_type = found
        return httpx.Response(200, content=data, headers={"Content-Type": content_type})

    def _authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            login, _, token = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return login.lower() == self.login_email.lower() and hmac.compare_digest(
            token.encode(), self.token.encode())

    # -- conversations ---------------------------------------------------------------------
    def _conversation(self, slug: str) -> SimConversation | None:
        return self.conversations.get(slug)

    def _list_conversations(self, request: httpx.Request, params: dict[str, str]
                            ) -> httpx.Response:
        convs = [c for c in self.conversations.values() if self._matches(c, params)]
        sort = params.get("sort")
        if sort == "changed":
            convs.sort(key=lambda c: (c.updated_at, c.change_seq), reverse=True)
        elif sort == "updated":
            convs.sort(key=self._last_customer_key, reverse=True)
        else:
            convs.reverse()
        return page_of("conversations", convs, params, self._render_list_item)

    def _render_list_item(self, c: SimConversation) -> dict[str, Any]:
        out = self._with_count(c, self.render_conversation(c))
        if self.list_items_without_updated_at:
            out.pop("updated_at", None)
        return out

    def _with_count(self, c: SimConversation, out: dict[str, Any]) -> dict[str, Any]:
        if self.message_count == "missing":
            out.pop("message_count", None)
        elif self.message_count == "public":
            out["message_count"] = sum(1 for m in c.messages if m.visibility == 0)
        return out

    @staticmethod
    def _last_customer_key(c: SimConversation) -> tuple[datetime, int]:
        last = c.public(staff=False)
        return (last.created_at, last.seq) if last else (c.created_at, 0)

    def _matches(self, c: SimConversation, params: dict[str, str]) -> bool:
        filt = params.get("filter")
        if filt == "archived":
            ok = c.status == 4
        elif filt == "open":
            ok = c.status == 0
        elif filt == "unassigned":
            ok = c.status != 4 and c.assignee is None
        else:
            ok = filt == "all" or c.status != 4
        tags = [t.strip() for t in params.get("tag", "").split(",") if t.strip()]
        if tags and not set(tags) & set(c.tags):
            return False
        if "category" in params and c.category != params["category"]:
            return False
        if "for" in params and params["for"].lower() not in {
                (f.email or "").lower() for f in c.followers}:
            return False
        if "origin" in params and ORIGIN_NAMES.get(params["origin"]) != c.origin:
            return False
        for key, value in params.items():
            if key.startswith("data[") and key.endswith("]") and \
                    str(c.data.get(key[5:-1], "")) != value:
                return False
        last = self._last_customer_key(c)[0]
        return ok and self._in_window(last, params)

    @staticmethod
    def _in_window(when: datetime, params: dict[str, str]) -> bool:
        start, end = parse_when(params.get("start_date")), parse_when(params.get("end_date"))
        return (start is None or when >= start) and (end is None or when <= end)

    def _get_conversation(self, request: httpx.Request, params: dict[str, str], slug: str
                          ) -> httpx.Response:
        conv = self._conversation(slug)
        if conv is None:
            return error(404, "Conversation not found")
        return json_response(200, self._with_count(conv, self.render_conversation(conv,
                                                                                  full=True)))

    def _create_conversation(self, request: httpx.Request, params: dict[str, str]
                             ) -> httpx.Response:
        write = validate_conversation_write(self, read_body(request), creating=True)
        user = write.user or {}
        staff_author = str(user["email"]).lower() in self.staff
        slug = self.add_conversation(
            write.subject or write.message_body[:60], write.message_body, str(user["email"]),
            customer_name=user.get("name") if isinstance(user.get("name"), str) else None,
            category=write.category or "support", tags=write.tags or (), data=write.data,
            origin=ORIGIN_API, status=0)
        conv = self.conversations[slug]
        if isinstance(user.get("data"), dict):
            conv.author.data.update(user["data"])
        first = conv.messages[0]
        first.attachments = [self.attachment_from_url(u) for u in write.attachment_urls]
        first.recipients = list(write.recipients)
        first.notified = not write.suppress_notifications
        conv.assignee = write.assignee
        if write.status is not None:
            conv.status, conv.hold_until = write.status, write.hold_until
        elif staff_author and not write.suppress_autoresolve:
            conv.status = 2
        return json_response(201, self.render_conversation(conv, full=True))

    def _update_conversation(self, request: httpx.Request, params: dict[str, str], slug: str
                             ) -> httpx.Response:
        conv = self._conversation(slug)
        if conv is None:
            return error(404, "Conversation not found")
        write = validate_conversation_write(self, read_body(request), creating=False)
        before = self.render_conversation(conv, full=True)
        if write.status is not None:
            conv.status = write.status
            conv.hold_until = write.hold_until if write.status == 5 else None
        elif write.hold_until is not None:
            conv.hold_until = write.hold_until
        if write.tags is not None:
            conv.tags = list(write.tags)
        if write.assignee is not None:
            conv.assignee = write.assignee
        if write.data is not None:
            conv.data.update(write.data)
        if write.category is not None:
            conv.category = write.category
        if self.render_conversation(conv, full=True) != before:
            self.touch(conv)
        return json_response(200, self.render_conversation(conv, full=True))

    # -- messages ----------------------------------------------------------------------------
    def _message_filter(self, m: SimMessage, params: dict[str, str]) -> bool:
        who = params.get("filter")
        if (who == "staff" and not m.author.staff) or (who == "customer" and m.author.staff):
            return False
        if "sent_by" in params and (m.author.email or "").lower() != params["sent_by"].lower():
            return False
        if "origin" in params and str(m.origin) != params["origin"]:
            return False
        return self._in_window(m.created_at, params)

    def _render_messages(self, pairs: list[tuple[SimConversation, SimMessage]],
                         params: dict[str, str], *, oldest_first: bool = False
                         ) -> httpx.Response:
        pairs.sort(key=lambda p: (p[1].created_at, p[1].seq), reverse=not oldest_first)
        original = params.get("include") == "original_body"
        return page_of("messages", pairs, params,
                       lambda p: self.render_message(p[0], p[1], original_body=original))

    def _list_messages(self, request: httpx.Request, params: dict[str, str], slug: str
                       ) -> httpx.Response:
        conv = self._conversation(slug)
        if conv is None:
            return error(404, "Conversation not found")
        return self._render_messages(
            [(conv, m) for m in conv.messages if self._message_filter(m, params)], params)

    def _list_all_messages(self, request: httpx.Request, params: dict[str, str]
                           ) -> httpx.Response:
        tags = {t.strip() for t in params.get("tag", "").split(",") if t.strip()}
        if self.messages_listing_ignores_tag:
            tags = set()
        pairs = [(c, m) for c in self.conversations.values()
                 if (not tags or tags & set(c.tags))
                 and ("category" not in params or c.category == params["category"])
                 for m in c.messages if self._message_filter(m, params)]
        return self._render_messages(pairs, params,
                                     oldest_first=self.messages_listing_order == "oldest")

    def _create_message(self, request: httpx.Request, params: dict[str, str], slug: str
                        ) -> httpx.Response:
        conv = self._conversation(slug)
        if conv is None:
            return error(404, "Conversation not found")
        write = validate_message_write(read_body(request))
        author = self.person(write.user_email, write.user_name) if write.user_email else \
            self.staff[self.login_email.lower()]
        msg = self.post_message(
            conv, write.body, author, write.visibility, origin=ORIGIN_API,
            origin_id=write.origin_id,
            attachments=[self.attachment_from_url(u) for u in write.attachment_urls],
            recipients=list(write.recipients), suppress_autoresolve=write.suppress_autoresolve,
            notify=not write.suppress_notifications)
        return json_response(201, self.render_message(conv, msg))
