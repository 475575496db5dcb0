"""The simulator's contacts, staff and channels endpoints (reference §5.7 to §5.9).

Contacts are account-wide customers addressed by email (or another identity with
``identifier_type``); only name, friendly name, avatar and data can change, and ``notes``
on a PUT are appended. The notes sub-resource takes an *unwrapped* body and answers with
every note of the contact, as documented. Staff are listed oldest first. Channels answer
``{"total_count", "channels"}`` without page fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx

from connectors.reamaze.sim.http import (
    JSON,
    Invalid,
    error,
    json_response,
    page_of,
    read_body,
)
from connectors.reamaze.sim.state import SimPerson, SimState
from connectors.reamaze.sim.validate import EMAIL_RE, URL_RE, parse_when

MOBILE_RE = re.compile(r"^\+[1-9]\d{6,14}$")
CHANNEL_FILTERS = {"email": 1, "twitter": 2, "facebook": 3, "chat": 6}
RouteTuple = tuple[str, re.Pattern[str], Callable[..., httpx.Response]]


def _flat(data: Any) -> bool:
    return isinstance(data, dict) and all(
        isinstance(v, str | int | float | bool) or v is None for v in data.values())


class DirectoryRoutes(SimState):
    login_email: str

    def directory_routes(self) -> list[RouteTuple]:
        return [
            ("GET", re.compile(r"/contacts"), self._list_contacts),
            ("POST", re.compile(r"/contacts"), self._create_contact),
            ("GET", re.compile(r"/contacts/([^/]+)"), self._get_contact),
            ("PUT", re.compile(r"/contacts/([^/]+)"), self._update_contact),
            ("GET", re.compile(r"/contacts/([^/]+)/notes"), self._list_notes),
            ("POST", re.compile(r"/contacts/([^/]+)/notes"), self._create_note),
            ("GET", re.compile(r"/staff"), self._list_staff),
            ("POST", re.compile(r"/staff"), self._create_staff),
            ("GET", re.compile(r"/channels"), self._list_channels),
            ("GET", re.compile(r"/channels/([^/]+)"), self._get_channel),
        ]

    # -- contacts ----------------------------------------------------------------------------
    def find_contact(self, identifier: str, identifier_type: str | None = None
                     ) -> SimPerson | None:
        kind = identifier_type or "email"
        if kind == "email":
            return self.contacts.get(identifier.lower())
        if kind == "mobile":
            return next((p for p in self.contacts.values() if p.mobile == identifier), None)
        return None  # facebook/twitter/instagram identities are not simulated

    def _list_contacts(self, request: httpx.Request, params: dict[str, str]) -> httpx.Response:
        people = list(self.contacts.values())
        q = params.get("q", "").strip().lower()
        if q:
            people = [p for p in people if any(
                q in (v or "").lower() for v in (p.name, p.email, p.mobile, p.friendly_name))]
        if params.get("type") == "email":
            people = [p for p in people if p.email]
        elif params.get("type") == "mobile":
            people = [p for p in people if p.mobile]
        for key, value in params.items():
            if key.startswith("data[") and key.endswith("]"):
                people = [p for p in people if str(p.data.get(key[5:-1], "")) == value]
        if params.get("sort") == "date":
            people.sort(key=lambda p: (p.created_at, p.id), reverse=True)
        else:
            people.sort(key=lambda p: ((p.name or "\uffff").casefold(), p.id))
        return page_of("contacts", people, params, self.render_contact)

    def _get_contact(self, request: httpx.Request, params: dict[str, str], ident: str
                     ) -> httpx.Response:
        person = self.find_contact(ident, params.get("identifier_type"))
        if person is None:
            return error(404, "Contact not found")
        return json_response(200, self.render_contact(person))

    def _create_contact(self, request: httpx.Request, params: dict[str, str]) -> httpx.Response:
        contact = read_body(request).get("contact")
        if not isinstance(contact, dict):
            raise Invalid({"contact": ["is missing"]})
        errors: dict[str, list[str]] = {}
        email, mobile = contact.get("email"), contact.get("mobile")
        if email is None and mobile is None:
            errors["base"] = ["an email or a mobile number is required"]
        if email is not None and not (isinstance(email, str) and EMAIL_RE.match(email)):
            errors["email"] = ["is invalid"]
        elif isinstance(email, str) and email.lower() in self.contacts:
            errors["email"] = ["has already been taken"]
        if mobile is not None and not (isinstance(mobile, str) and MOBILE_RE.match(mobile)):
            errors["mobile"] = ["must be in E.164 format without spaces"]
        elif mobile is not None and self.find_contact(str(mobile), "mobile") is not None:
            errors["mobile"] = ["has already been taken"]
        self._check_editable(contact, errors)
        if errors:
            raise Invalid(errors)
        person = self.add_contact(email, contact.get("name"), mobile=mobile,
                                  data=contact.get("data"),
                                  external_id=None if contact.get("id") is None
                                  else str(contact["id"]))
        self._apply_editable(person, contact)
        return json_response(201, self.render_contact(person))

    @staticmethod
    def _check_editable(contact: JSON, errors: dict[str, list[str]]) -> None:
        for key in ("name", "friendly_name"):
            if contact.get(key) is not None and not isinstance(contact[key], str):
                errors[key] = ["must be a string"]
        avatar = contact.get("external_avatar_url")
        if avatar is not None and not (isinstance(avatar, str) and URL_RE.match(avatar)):
            errors["external_avatar_url"] = ["must be an absolute URL"]
        if contact.get("data") is not None and not _flat(contact["data"]):
            errors["data"] = ["must be a flat object"]
        notes = contact.get("notes")
        if notes is not None and not (isinstance(notes, list)
                                      and all(isinstance(n, str) for n in notes)):
            errors["notes"] = ["must be a list of strings"]

    def _apply_editable(self, person: SimPerson, contact: JSON) -> None:
        for key, attr in (("name", "name"), ("friendly_name", "friendly_name"),
                          ("external_avatar_url", "avatar_url")):
            if contact.get(key) is not None:
                setattr(person, attr, contact[key])
        if contact.get("data") is not None:
            person.data.update(contact["data"])
        for text in contact.get("notes") or []:
            self._add_note(person, text, self.login_email)
        person.updated_at = max(self.now(), person.updated_at)

    def _add_note(self, person: SimPerson, text: str, creator: str, when: Any = None) -> None:
        at = self.ts(parse_when(when) or self.now())
        staff = self.staff.get(creator.lower())
        person.notes.append({"id": self.next_seq(), "note": text, "created_at": at,
                             "updated_at": at, "creator": {
                                 "email": creator, "name": staff.name if staff else None}})

    def _update_contact(self, request: httpx.Request, params: dict[str, str], ident: str
                        ) -> httpx.Response:
        person = self.find_contact(ident, params.get("identifier_type"))
        if person is None:
            return error(404, "Contact not found")
        contact = read_body(request).get("contact")
        if not isinstance(contact, dict):
            raise Invalid({"contact": ["is missing"]})
        errors: dict[str, list[str]] = {}
        self._check_editable(contact, errors)
        if errors:
            raise Invalid(errors)
        self._apply_editable(person, contact)  # email/mobile/id are immutable: ignored
        return json_response(200, self.render_contact(person))

    def _list_notes(self, request: httpx.Request, params: dict[str, str], ident: str
                    ) -> httpx.Response:
        person = self.find_contact(ident, params.get("identifier_type"))
        if person is None:
            return error(404, "Contact not found")
        return json_response(200, [dict(n) for n in person.notes])

    def _create_note(self, request: httpx.Request, params: dict[str, str], ident: str
                     ) -> httpx.Response:
        person = self.find_contact(ident, params.get("identifier_type"))
        if person is None:
            return error(404, "Contact not found")
        body = read_body(request)  # documented unwrapped: {"body", "creator_email", ...}
        text = body.get("body")
        if not isinstance(text, str) or not text.strip():
            raise Invalid({"body": ["can't be blank"]})
        creator = body.get("creator_email")
        self._add_note(person, text, creator if isinstance(creator, str) else self.login_email,
                       body.get("created_at"))
        return json_response(201, [dict(n) for n in person.notes])

    # -- staff and channels --------------------------------------------------------------------
    def _list_staff(self, request: httpx.Request, params: dict[str, str]) -> httpx.Response:
        staff = sorted(self.staff.values(), key=lambda p: (p.created_at, p.id))
        return page_of("staff", staff, params, self.render_staff)

    def _create_staff(self, request: httpx.Request, params: dict[str, str]) -> httpx.Response:
        staff = read_body(request).get("staff")
        if not isinstance(staff, dict):
            raise Invalid({"staff": ["is missing"]})
        errors: dict[str, list[str]] = {}
        email = staff.get("email")
        if not isinstance(email, str) or not EMAIL_RE.match(email):
            errors["email"] = ["is invalid"]
        elif email.lower() in self.staff:
            errors["email"] = ["has already been taken"]
        if not isinstance(staff.get("name"), str) or not staff["name"].strip():
            errors["name"] = ["can't be blank"]
        if not isinstance(staff.get("password"), str) or len(staff["password"]) < 8:
            errors["password"] = ["is too short (minimum is 8 characters)"]
        if errors:
            raise Invalid(errors)
        return json_response(201, self.render_staff(self.add_staff(str(email), staff["name"])))

    def _list_channels(self, request: httpx.Request, params: dict[str, str]) -> httpx.Response:
        channels = list(self.channels.values())
        kind = params.get("channel")
        if kind:
            channels = [c for c in channels if c.channel == CHANNEL_FILTERS.get(kind)]
        return json_response(200, {"total_count": len(channels), "channels": [
            self.render_channel(c, full=True) for c in channels]})

    def _get_channel(self, request: httpx.Request, params: dict[str, str], slug: str
                     ) -> httpx.Response:
        channel = self.channels.get(slug)
        if channel is None:
            return error(404, "Channel not found")
        return json_response(200, self.render_channel(channel, full=True))
