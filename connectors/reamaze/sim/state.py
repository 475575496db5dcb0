"""The Re:amaze simulator's data: conversations, messages, people, channels, and time.

This half of the simulator knows nothing about HTTP. It holds the state, renders it in the
documented JSON shapes (reference §5 and §6), applies Re:amaze's state rules, and offers the
seeding/mutation helpers tests and the demo use directly (``add_conversation``,
``add_customer_message``, ``set_status`` ...). Choices where the reference is silent:

* timestamps are kept to the millisecond (what Re:amaze renders) and rendered with
  ``render_offset`` ("Z" when zero) — tests change it to prove ids ignore the offset;
* a customer message reopens anything but spam to Open (0) and clears a hold; a public
  staff message resolves to Done (2), or with ``suppress_autoresolve`` moves Open to
  Responded (1); internal notes and collision notices change no status;
* every change (message, status, tags, assignee, data, channel) bumps ``updated_at`` and a
  change sequence, so ``sort=changed`` is deterministic even when the clock stands still;
  a write that changes nothing bumps nothing;
* a repeated ``origin_id`` is accepted and creates another message (the API documents
  no dedupe; callers must look before they write).
"""

from __future__ import annotations

import hashlib
import html
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from connectors.reamaze.sim.http import Invalid

Now = Callable[[], datetime]
JSON = dict[str, Any]

ORIGIN_EMAIL, ORIGIN_API = 1, 7
ORIGIN_NAMES = {"email": 1, "twitter": 2, "facebook": 3, "chat": 6, "api": 7, "instagram": 8,
                "sms": 9, "voice": 10, "whatsapp": 15, "instagram_dm": 16}


class SimClock:
    """A settable aware clock; call it for "now", ``advance`` it from tests."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("SimClock needs an aware datetime")
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when


def wall_clock() -> datetime:
    return datetime.now(UTC)


def slugify(subject: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", subject.lower()).strip("-")[:60].strip("-") \
        or "conversation"


@dataclass
class SimPerson:
    id: int
    email: str | None
    name: str | None
    created_at: datetime
    updated_at: datetime
    mobile: str | None = None
    staff: bool = False
    friendly_name: str | None = None
    external_id: str | None = None
    avatar_url: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[JSON] = field(default_factory=list)
    role: JSON | None = None


@dataclass
class SimChannel:
    slug: str
    name: str
    email: str
    channel: int
    created_at: datetime
    id: int = 0


@dataclass
class SimMessage:
    seq: int
    body: str
    visibility: int
    author: SimPerson
    created_at: datetime
    origin: int = ORIGIN_API
    origin_id: str | None = None
    attachments: list[JSON] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    notified: bool = True  # False when the writer suppressed notifications (emails)
    html: str | None = None  # ``original_body`` as the mail came in; None: made from body


@dataclass
class SimConversation:
    slug: str
    subject: str
    category: str
    author: SimPerson
    status: int
    created_at: datetime
    updated_at: datetime
    change_seq: int
    tags: list[str] = field(default_factory=list)
    assignee: SimPerson | None = None
    data: dict[str, Any] = field(default_factory=dict)
    hold_until: datetime | None = None
    origin: int = ORIGIN_EMAIL
    messages: list[SimMessage] = field(default_factory=list)
    followers: list[SimPerson] = field(default_factory=list)

    def public(self, *, staff: bool) -> SimMessage | None:
        found = [m for m in self.messages if m.visibility == 0 and m.author.staff == staff]
        return found[-1] if found else None


class SimState:
    def __init__(self, *, brand: str, clock: Now | None = None) -> None:
        self.brand = brand
        self.clock: Now = clock or wall_clock
        self.render_offset = timedelta(0)
        self.lock = threading.RLock()
        self.staff: dict[str, SimPerson] = {}
        self.contacts: dict[str, SimPerson] = {}  # lower-case email or mobile -> customer
        self.channels: dict[str, SimChannel] = {}
        self.conversations: dict[str, SimConversation] = {}  # creation order
        self.files: dict[str, tuple[bytes, str]] = {}  # hosted path -> (bytes, type)
        self._seq = 0
        # Re:amaze fetches an attachment URL and hosts a copy. Unset, the simulator only
        # pretends to; set, it fetches (bytes, or None when the fetch failed) and keeps
        # the bytes under the hosted URL, for tests of what actually arrived.
        self.fetch: Callable[[str], bytes | None] | None = None
        self.hosted: dict[str, bytes] = {}

    # -- time and ids ----------------------------------------------------------------------
    def now(self) -> datetime:
        t = self.clock()
        return t.replace(microsecond=t.microsecond // 1000 * 1000)

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def ts(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        text = value.astimezone(timezone(self.render_offset)).isoformat(timespec="milliseconds")
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    # -- seeding helpers ---------------------------------------------------------------------
    def add_staff(self, email: str, name: str, *, role: JSON | None = None) -> SimPerson:
        with self.lock:
            now = self.now()
            person = SimPerson(id=self.next_seq(), email=email, name=name, created_at=now,
                               updated_at=now, staff=True,
                               role=role if role is not None else {
                                   "id": 2, "name": "Agent", "admin?": False,
                                   "permissions": {"reply_to_customers?": True}})
            self.staff[email.lower()] = person
            return person

    def add_channel(self, slug: str, name: str | None = None, email: str | None = None,
                    channel: int = 1) -> SimChannel:
        with self.lock:
            ch = SimChannel(slug=slug, name=name or slug.title(),
                            email=email or f"{slug}@{self.brand}.reamaze.com", channel=channel,
                            created_at=self.now(), id=self.next_seq())
            self.channels[slug] = ch
            return ch

    def add_contact(self, email: str | None = None, name: str | None = None, *,
                    mobile: str | None = None, data: dict[str, Any] | None = None,
                    external_id: str | None = None) -> SimPerson:
        with self.lock:
            now = self.now()
            person = SimPerson(id=self.next_seq(), email=email, name=name, created_at=now,
                               updated_at=now, mobile=mobile, data=dict(data or {}),
                               external_id=external_id)
            self.contacts[(email or mobile or str(person.id)).lower()] = person
            return person

    def person(self, email: str, name: str | None = None) -> SimPerson:
        """The staff member or customer with this email; unknown emails become contacts."""
        with self.lock:
            key = email.lower()
            found = self.staff.get(key) or self.contacts.get(key)
            return found or self.add_contact(email, name)

    def add_conversation(self, subject: str, body: str, customer_email: str, *,
                         customer_name: str | None = None, category: str = "support",
                         status: int = 0, tags: Iterable[str] = (),
                         data: dict[str, Any] | None = None, assignee: str | None = None,
                         origin: int = ORIGIN_EMAIL, origin_id: str | None = None) -> str:
        """A conversation started by a customer (or staff) email; returns its slug."""
        with self.lock:
            if category not in self.channels:
                self.add_channel(category)
            author = self.person(customer_email, customer_name)
            base = slugify(subject)
            slug, n = base, 1
            while slug in self.conversations:
                n += 1
                slug = f"{base}-{n}"
            now = self.now()
            conv = SimConversation(slug=slug, subject=subject, category=category, author=author,
                                   status=status, created_at=now, updated_at=now,
                                   change_seq=self.next_seq(), tags=list(tags),
                                   data=dict(data or {}), origin=origin,
                                   assignee=self.staff.get(assignee.lower()) if assignee else None,
                                   followers=[author])
            conv.messages.append(SimMessage(seq=self.next_seq(), body=body, visibility=0,
                                            author=author, created_at=now, origin=origin,
                                            origin_id=origin_id))
            self.conversations[slug] = conv
            return slug

    def add_customer_message(self, slug: str, body: str, *, email: str | None = None,
                             attachments: Iterable[JSON] = (),
                             html: str | None = None) -> SimMessage:
        with self.lock:
            conv = self.conversations[slug]
            author = self.person(email) if email else conv.author
            msg = self.post_message(conv, body, author, 0, origin=ORIGIN_EMAIL,
                                    attachments=list(attachments))
            msg.html = html
            return msg

    def add_staff_message(self, slug: str, body: str, *, email: str, visibility: int = 0,
                          origin_id: str | None = None,
                          suppress_autoresolve: bool = False) -> SimMessage:
        with self.lock:
            return self.post_message(self.conversations[slug], body, self.staff[email.lower()],
                                     visibility, origin_id=origin_id,
                                     suppress_autoresolve=suppress_autoresolve)

    def set_status(self, slug: str, status: int, hold_until: datetime | None = None) -> None:
        with self.lock:
            conv = self.conversations[slug]
            if conv.status != status or conv.hold_until != hold_until:
                conv.status, conv.hold_until = status, hold_until
                self.touch(conv)

    def set_tags(self, slug: str, tags: Iterable[str]) -> None:
        with self.lock:
            conv = self.conversations[slug]
            new = list(dict.fromkeys(tags))
            if new != conv.tags:
                conv.tags = new
                self.touch(conv)

    def touch(self, conv: SimConversation) -> None:
        conv.updated_at = max(self.now(), conv.updated_at)
        conv.change_seq = self.next_seq()

    # -- Re:amaze rules ------------------------------------------------------------------------
    def post_message(self, conv: SimConversation, body: str, author: SimPerson, visibility: int,
                     *, origin: int = ORIGIN_API, origin_id: str | None = None,
                     attachments: list[JSON] | None = None, recipients: list[str] | None = None,
                     suppress_autoresolve: bool = False, notify: bool = True) -> SimMessage:
        msg = SimMessage(seq=self.next_seq(), body=body, visibility=visibility, author=author,
                         created_at=max(self.now(), conv.created_at), origin=origin,
                         origin_id=origin_id, attachments=list(attachments or []),
                         recipients=list(recipients or []), notified=notify)
        conv.messages.append(msg)
        if visibility == 0 and not author.staff:
            if conv.status not in (3, 9):
                conv.status, conv.hold_until = 0, None
        elif visibility == 0 and conv.status not in (3, 9):
            if not suppress_autoresolve:
                conv.status, conv.hold_until = 2, None
            elif conv.status == 0:
                conv.status = 1
        if author not in conv.followers:
            conv.followers.append(author)
        self.touch(conv)
        return msg

    def host_file(self, name: str, data: bytes, content_type: str = "application/octet-stream"
                  ) -> JSON:
        """A file as Re:amaze hosts an attachment (a message's ``attachments`` entry); its
        bytes are served at its ``url`` without credentials, like Re:amaze's file host."""
        n = self.next_seq()
        hosted = f"https://{self.brand}.reamaze.com/attachments/{n}/{quote(name)}"
        self.files[unquote(urlsplit(hosted).path)] = (data, content_type)  # as httpx reads it
        return {"file_file_name": name, "file_content_type": content_type,
                "file_file_size": len(data), "url": hosted, "thumb_url": hosted + "?thumb=1",
                "image?": content_type.startswith("image/")}

    def attachment_from_url(self, url: str) -> JSON:
        """Re:amaze fetches the URL and hosts a copy; the simulator pretends it did."""
        name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "file"
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        types = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
                 "gif": "image/gif", "pdf": "application/pdf", "txt": "text/plain"}
        ctype = types.get(ext, "application/octet-stream")
        size = len(url) * 97 % 90_000 + 1000
        data = self.fetch(url) if self.fetch is not None else None
        if self.fetch is not None:
            if data is None:
                # Undocumented what Re:amaze answers; a validation failure is assumed.
                raise Invalid({"attachment": ["could not be fetched"]})
            size = len(data)
        n = self.next_seq()
        hosted = f"https://{self.brand}.reamaze.com/attachments/{n}/{name}"
        if data is not None:
            self.hosted[hosted] = data
        return {"file_file_name": name, "file_content_type": ctype,
                "file_file_size": size,
                "url": hosted, "thumb_url": hosted + "?thumb=1",
                "image?": ctype.startswith("image/")}

    # -- rendering --------------------------------------------------------------------------
    def render_person(self, p: SimPerson | None, *, flags: bool = False) -> JSON | None:
        if p is None:
            return None
        out: JSON = {"id": p.id, "name": p.name, "email": p.email, "mobile": p.mobile,
                     "friendly_name": p.friendly_name, "display_name": p.name or p.email,
                     "twitter": None, "facebook": None, "instagram": None}
        if flags:
            out.update({"staff?": p.staff, "customer?": not p.staff, "bot?": False})
        return out

    def render_channel(self, ch: SimChannel, *, full: bool = False) -> JSON:
        out: JSON = {"id": ch.id, "name": ch.name, "slug": ch.slug, "email": ch.email,
                     "channel": ch.channel}
        if full:
            out.update({"created_at": self.ts(ch.created_at), "updated_at": self.ts(ch.created_at),
                        "visibility": 1, "spam_filter_enabled": True, "verified": True,
                        "settings_reply_from_name": "channel",
                        "brand": {"name": self.brand.title(), "url": f"{self.brand}.reamaze.com"}})
        return out

    def render_conversation(self, c: SimConversation, *, full: bool = False) -> JSON:
        first = c.messages[0] if c.messages else None
        last_customer, last_staff = c.public(staff=False), c.public(staff=True)
        token = hashlib.sha256(c.slug.encode()).hexdigest()[:16]
        out: JSON = {
            "subject": c.subject, "display_subject": c.subject, "slug": c.slug,
            "status": c.status, "created_at": self.ts(c.created_at),
            "updated_at": self.ts(c.updated_at), "tag_list": list(c.tags),
            "message": {"body": first.body} if first else None,
            "last_customer_message": ({"body": last_customer.body,
                                       "created_at": self.ts(last_customer.created_at)}
                                      if last_customer else None),
            "author": self.render_person(c.author),
            "assignee": self.render_person(c.assignee),
            "category": self.render_channel(self.channels[c.category]),
            "followers": [self.render_person(f, flags=True) for f in c.followers],
            "origin": c.origin, "hold_until": self.ts(c.hold_until),
            "perma_url": f"https://{self.brand}.reamaze.com/customer/conversations/{c.slug}"
                         f"?token={token}",
            "message_count": len(c.messages), "readOnly": False,
        }
        if full:
            out["last_staff_message"] = ({"body": last_staff.body,
                                          "created_at": self.ts(last_staff.created_at)}
                                         if last_staff else None)
            out["data"] = dict(c.data)
        return out

    def render_message(self, c: SimConversation, m: SimMessage, *,
                       original_body: bool = False) -> JSON:
        out: JSON = {
            "body": m.body, "visibility": m.visibility, "origin": m.origin,
            "origin_id": m.origin_id, "created_at": self.ts(m.created_at),
            "user": {"name": m.author.name, "email": m.author.email, "mobile": m.author.mobile,
                     "staff?": m.author.staff},
            "recipients": [{"name": None, "email": r} for r in m.recipients],
            "direct_recipients": [],
            "attachments": [dict(a) for a in m.attachments],
            "conversation": {"subject": c.subject, "slug": c.slug,
                             "created_at": self.ts(c.created_at),
                             "category": self.render_channel(self.channels[c.category])},
        }
        if original_body:
            out["original_body"] = m.html if m.html is not None else (
                "<p>" + html.escape(m.body, quote=False).replace("\n", "<br>") + "</p>")
        return out

    def render_contact(self, p: SimPerson) -> JSON:
        return {"name": p.name, "email": p.email, "mobile": p.mobile, "friendly_name":
                p.friendly_name, "id": p.external_id, "_id": p.id, "data": dict(p.data),
                "external_avatar_url": p.avatar_url, "twitter": None, "facebook": None,
                "instagram": None, "created_at": self.ts(p.created_at),
                "updated_at": self.ts(p.updated_at), "notes": [dict(n) for n in p.notes]}

    def render_staff(self, p: SimPerson) -> JSON:
        return {"name": p.name, "display_name": p.name, "email": p.email,
                "notification_email": p.email, "created_at": self.ts(p.created_at),
                "role": dict(p.role or {})}
