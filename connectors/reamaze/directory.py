"""People and places: contacts, staff (users), their roles, and channels (collections).

Plain functions over an ``ApiClient`` so the connector stays small; each maps through the
wire models and ``mapping``. Contacts are account-wide while everything else is scoped to
the brand's host (reference §5.7) — the same client serves both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import structlog

from connectors.http import ApiClient
from connectors.paging import PageNumberPaginator, walk_pages
from connectors.reamaze.mapping import collection_from_category, contact_from_wire, user_from_staff
from connectors.reamaze.wire import (
    CONNECTOR,
    WireChannel,
    WireContact,
    WireStaff,
    parse_items,
    parse_one,
)
from syncer.errors import BadPayloadError
from syncer.models import Collection, Contact, Role, User

log = structlog.get_logger("reamaze_sync.reamaze")


class EnvelopePaginator(PageNumberPaginator):
    """Page numbers when the envelope says there are pages; one request when it does not.

    ``GET /channels`` answers ``{"total_count", "channels"}`` without page fields (GO
    model); asking for page 2 of such a listing would return page 1 again.
    """

    def next(self, page: Mapping[str, Any], items: list[Any]) -> dict[str, Any] | None:
        if not isinstance(page.get("page_count"), int):
            return None
        return super().next(page, items)


def iter_raw(api: ApiClient, path: str, key: str, params: Mapping[str, Any] | None = None,
             *, paged: bool = True) -> Iterator[list[Any]]:
    """Raw item lists, one per page, of a paged Re:amaze listing."""
    base = dict(params or {})

    def fetch(p: dict[str, Any]) -> Any:
        return api.get_json(path, params={**base, **p})

    paginator = PageNumberPaginator() if paged else EnvelopePaginator()
    for _page, items in walk_pages(fetch, paginator, key, connector=CONNECTOR,
                                   listing=f"GET {path}"):
        yield items


def contact_path(identifier: str) -> str:
    return "/contacts/" + quote(identifier, safe="@+")


# -- contacts ---------------------------------------------------------------------------

def list_contacts(api: ApiClient, q: str | None = None,
                  data: Mapping[str, str] | None = None) -> Iterator[Contact]:
    params: dict[str, Any] = {}
    if q:
        params["q"] = q
    for k, v in (data or {}).items():
        params[f"data[{k}]"] = v
    for items in iter_raw(api, "/contacts", "contacts", params):
        for wire in parse_items(WireContact, items, kind="contact"):
            contact = contact_from_wire(wire)
            if contact is not None:
                yield contact


def _contact(raw: Any, object_id: str) -> Contact:
    # Some clients read responses wrapped as {"contact": {...}}; the docs show a bare object.
    if isinstance(raw, Mapping) and isinstance(raw.get("contact"), Mapping):
        raw = raw["contact"]
    contact = contact_from_wire(parse_one(WireContact, raw, object_id=object_id))
    if contact is None:
        raise BadPayloadError("contact without email, mobile or id", connector=CONNECTOR,
                              object_id=object_id)
    return contact


def get_contact(api: ApiClient, identifier: str) -> Contact:
    return _contact(api.get_json(contact_path(identifier), object_id=identifier), identifier)


def find_contact(api: ApiClient, email: str) -> Contact | None:
    """Exact email match; ``q`` is a fuzzy search, so the match is checked here."""
    wanted = email.strip().lower()
    for contact in list_contacts(api, q=email):
        if contact.email and contact.email.strip().lower() == wanted:
            return contact
    return None


def create_contact(api: ApiClient, *, email: str | None = None, name: str | None = None,
                   mobile: str | None = None, external_id: str | None = None,
                   data: Mapping[str, str] | None = None, notes: tuple[str, ...] = ()
                   ) -> Contact:
    if not email and not mobile:
        raise ValueError("a contact needs an email or a mobile number")
    body: dict[str, Any] = {k: v for k, v in (("email", email), ("name", name),
                                                ("mobile", mobile), ("id", external_id))
                            if v is not None}
    if data:
        body["data"] = dict(data)
    if notes:
        body["notes"] = list(notes)
    ident = email or mobile or ""
    # Not re-sent after a timeout/5xx: a second POST of a stored contact is a 422
    # "already taken"; the caller can read the contact instead.
    raw = api.send_json("POST", "/contacts", {"contact": body}, object_id=ident,
                        retry_transient=False)
    return _contact(raw, ident)


def update_contact(api: ApiClient, identifier: str, *, name: str | None = None,
                   friendly_name: str | None = None, data: Mapping[str, str] | None = None,
                   identifier_type: str | None = None) -> Contact:
    """Only name, friendly name and data can change; email/mobile are immutable."""
    body: dict[str, Any] = {}
    if name is not None:
        body["name"] = name
    if friendly_name is not None:
        body["friendly_name"] = friendly_name
    if data is not None:
        body["data"] = dict(data)
    params = {"identifier_type": identifier_type} if identifier_type else None
    raw = api.send_json("PUT", contact_path(identifier), {"contact": body}, params=params,
                        object_id=identifier)
    return _contact(raw, identifier)


# -- staff, roles, channels ----------------------------------------------------------------

def list_staff(api: ApiClient) -> list[User]:
    users: list[User] = []
    for items in iter_raw(api, "/staff", "staff"):
        users.extend(user_from_staff(s) for s in parse_items(WireStaff, items, kind="staff"))
    return users


def roles_of(users: list[User]) -> list[Role]:
    roles: dict[str, Role] = {}
    for user in users:
        if user.role is not None:
            roles.setdefault(user.role.id, user.role)
    return list(roles.values())


def list_channels(api: ApiClient, kind: str | None = None) -> list[Collection]:
    params = {"channel": kind} if kind else None
    out: list[Collection] = []
    for items in iter_raw(api, "/channels", "channels", params, paged=False):
        for wire in parse_items(WireChannel, items, kind="channel"):
            collection = collection_from_category(wire)
            if collection is not None:
                out.append(collection)
    return out
