"""Re:amaze messages as comments: visibility, markers, identity, attachments."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from reamaze_support import AGENT, LOGIN

from connectors.reamaze.connector import ReamazeConnector
from connectors.reamaze.mapping import comments_from_wire
from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.reamaze.sim.state import SimClock
from connectors.reamaze.wire import WireMessage
from syncer.errors import LeakError, NotFoundError
from syncer.models import Attachment, NewComment, Visibility

pytest_plugins = ["reamaze_fixtures"]


def _posted(rz_sim: ReamazeSimulator) -> dict[str, object]:
    """The message body of the last POST the simulator received, as the client sent it."""
    return rz_sim.calls("POST")[-1].json["message"]  # type: ignore[no-any-return]


@pytest.fixture
def seeded(rz_sim: ReamazeSimulator, rz_sim_clock: SimClock) -> str:
    slug = rz_sim.add_conversation("Crash on save", "App crashes", "cu@x.example",
                                customer_name="Cu")
    rz_sim_clock.advance(60)
    rz_sim.add_staff_message(slug, "Looking into it", email=AGENT)
    rz_sim_clock.advance(60)
    rz_sim.add_staff_message(slug, "Probably the cache bug", email=AGENT, visibility=1)
    rz_sim_clock.advance(60)
    rz_sim.add_staff_message(slug, "Agnes is also replying", email=AGENT, visibility=2)
    rz_sim_clock.advance(60)
    rz_sim.add_customer_message(slug, "Any news?")
    return slug


def test_comments_are_oldest_first_with_visibility_and_authors(
        rz_conn: ReamazeConnector, seeded: str) -> None:
    """Public replies, internal notes and collision notices come back typed and in order."""
    comments = rz_conn.list_comments(seeded)
    assert [c.body for c in comments] == ["App crashes", "Looking into it",
                                          "Probably the cache bug", "Agnes is also replying",
                                          "Any news?"]
    assert [c.visibility for c in comments] == [
        Visibility.PUBLIC, Visibility.PUBLIC, Visibility.INTERNAL, Visibility.INTERNAL,
        Visibility.PUBLIC]
    assert [c.read_only for c in comments] == [False, False, False, True, False]
    assert [c.author.is_staff for c in comments] == [False, True, True, True, False]
    assert comments[0].author.email == "cu@x.example" and comments[0].author.name == "Cu"
    assert all(c.ticket_id == seeded and c.id.startswith("m-") for c in comments)


def test_comment_ids_survive_a_change_of_utc_offset(rz_conn: ReamazeConnector,
                                                    rz_sim: ReamazeSimulator, seeded: str) -> None:
    """Re-reading the same messages rendered with another offset yields the same ids."""
    before = [c.id for c in rz_conn.list_comments(seeded)]
    rz_sim.render_offset = timedelta(hours=-7)
    after = rz_conn.list_comments(seeded)
    assert [c.id for c in after] == before
    assert after[0].raw is not None and str(after[0].raw["created_at"]).endswith("-07:00")


def test_internal_note_is_posted_as_visibility_1_with_the_marker(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator, seeded: str) -> None:
    """An internal note is written with visibility 1, origin_id, and no notifications."""
    status_before = rz_sim.conversations[seeded].status
    comment = rz_conn.create_comment(seeded, NewComment(
        body="Filed as #12", visibility=Visibility.INTERNAL, marker="rs-note1",
        notify_customer=True))
    assert comment.visibility is Visibility.INTERNAL
    assert comment.id == "rs-note1" and comment.marker == "rs-note1"
    assert comment.author.email == LOGIN and comment.author.is_staff
    sent = _posted(rz_sim)
    assert sent["visibility"] == 1 and sent["origin_id"] == "rs-note1"
    assert sent["suppress_notifications"] is True and sent["suppress_autoresolve"] is True
    stored = rz_sim.conversations[seeded].messages[-1]
    assert (stored.visibility, stored.origin_id) == (1, "rs-note1")
    assert rz_sim.conversations[seeded].status == status_before  # notes change no status


def test_public_reply_notifies_only_when_asked(rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator,
                                              seeded: str) -> None:
    """A public reply is visibility 0 and suppresses notifications unless notify_customer."""
    rz_conn.create_comment(seeded, NewComment(body="Fixed", visibility=Visibility.PUBLIC,
                                           marker="rs-r1"))
    assert _posted(rz_sim)["visibility"] == 0
    assert _posted(rz_sim)["suppress_notifications"] is True
    rz_conn.create_comment(seeded, NewComment(body="Fixed for real",
                                           visibility=Visibility.PUBLIC, marker="rs-r2",
                                           notify_customer=True))
    assert _posted(rz_sim)["suppress_notifications"] is False
    # suppress_autoresolve keeps a staff reply from closing the conversation.
    assert rz_sim.conversations[seeded].status in (0, 1)


def test_marker_round_trip_and_find_comment_by_marker(rz_conn: ReamazeConnector,
                                                      seeded: str) -> None:
    """A written comment is found again by its marker, with the same id as when created."""
    created = rz_conn.create_comment(seeded, NewComment(body="Copied from tracker",
                                                     visibility=Visibility.PUBLIC,
                                                     marker="rs-find-me"))
    found = rz_conn.find_comment_by_marker(seeded, "rs-find-me")
    assert found is not None and found.id == created.id == "rs-find-me"
    assert found.body == "Copied from tracker" and found.marker == "rs-find-me"
    assert rz_conn.find_comment_by_marker(seeded, "rs-absent") is None


def test_a_repeated_origin_id_is_accepted_and_identities_stay_unique(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator, rz_sim_clock: SimClock,
        seeded: str) -> None:
    """Re:amaze stores a second message with the same origin_id; ids remain distinct."""
    for _ in range(2):
        rz_sim_clock.advance(1)
        rz_conn.create_comment(seeded, NewComment(body="twice", visibility=Visibility.INTERNAL,
                                               marker="rs-dup"))
    comments = rz_conn.list_comments(seeded)
    dups = [c for c in comments if c.body == "twice"]
    assert len(dups) == 2
    assert dups[0].id == "rs-dup" and dups[1].id.startswith("m-")
    assert len({c.id for c in comments}) == len(comments)


def test_collision_visibility_cannot_be_written(rz_raw: httpx.Client, seeded: str) -> None:
    """The API accepts only visibility 0 and 1 on write; 2 is a 422."""
    response = rz_raw.post(f"/conversations/{seeded}/messages",
                        json={"message": {"body": "x", "visibility": 2}})
    assert response.status_code == 422
    assert "visibility" in response.json()["errors"]


def test_note_that_comes_back_public_is_an_error(rz_conn: ReamazeConnector,
                                                 rz_sim: ReamazeSimulator,
                                                 seeded: str) -> None:
    """If the server ever echoes an internal note as public, the write is reported as a
    leak that could not be removed (Re:amaze's API cannot delete a message)."""
    echo = {"body": "secret", "visibility": 0, "origin_id": "rs-x",
            "created_at": "2026-01-05T10:00:00Z", "user": {"email": LOGIN}}
    rz_sim.faults.add(201, method="POST", body=json.dumps(echo).encode())
    with pytest.raises(LeakError, match="came back public") as raised:
        rz_conn.create_comment(seeded, NewComment(body="secret", visibility=Visibility.INTERNAL,
                                               marker="rs-x"))
    assert raised.value.removed is False and raised.value.ticket_id == seeded


def test_unparseable_create_response_falls_back_to_the_marker(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator, seeded: str) -> None:
    """A created message whose echo is unreadable is read back by its marker instead."""
    rz_sim.faults.add(201, method="POST", commit=True, body=b'{"body": "no created_at"}')
    comment = rz_conn.create_comment(seeded, NewComment(body="hello", visibility=Visibility.PUBLIC,
                                                     marker="rs-garbled"))
    assert comment.id == "rs-garbled" and comment.body == "hello"
    assert len(rz_sim.calls("POST")) == 1
    assert [m.origin_id for m in rz_sim.conversations[seeded].messages].count("rs-garbled") == 1


def test_comments_page_through_long_conversations(rz_conn: ReamazeConnector,
                                                  rz_sim: ReamazeSimulator,
                                                  rz_sim_clock: SimClock) -> None:
    """More than 30 messages are collected across pages, none lost and none repeated."""
    slug = rz_sim.add_conversation("Long", "m0", "cu@x.example")
    for i in range(1, 75):
        rz_sim_clock.advance(1)
        rz_sim.add_customer_message(slug, f"m{i}")
    comments = rz_conn.list_comments(slug)
    assert [c.body for c in comments] == [f"m{i}" for i in range(75)]
    assert len(rz_sim.calls("GET", f"/api/v1/conversations/{slug}/messages")) == 3


def test_a_message_arriving_while_paging_does_not_duplicate_or_drop(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator, rz_sim_clock: SimClock) -> None:
    """A new message shifting newest-first pages mid-read is de-duplicated, not doubled."""
    slug = rz_sim.add_conversation("Busy", "m0", "cu@x.example")
    for i in range(1, 40):
        rz_sim_clock.advance(1)
        rz_sim.add_customer_message(slug, f"m{i}")

    def arrive(request: httpx.Request) -> None:
        if request.url.params.get("page") == "2" and len(rz_sim.conversations[slug].messages) == 40:
            rz_sim_clock.advance(1)
            rz_sim.add_customer_message(slug, "late")

    rz_sim.before_request.append(arrive)
    bodies = [c.body for c in rz_conn.list_comments(slug)]
    assert bodies[:40] == [f"m{i}" for i in range(40)]
    assert len(bodies) == len(set(bodies))


def test_attachments_are_read_from_messages(rz_conn: ReamazeConnector,
                                            rz_sim: ReamazeSimulator) -> None:
    """Message attachments map to name, type, size and URL."""
    slug = rz_sim.add_conversation("Screenshot", "see attached", "cu@x.example")
    rz_sim.add_customer_message(slug, "here", attachments=[{
        "file_file_name": "shot.png", "file_content_type": "image/png",
        "file_file_size": 69892, "url": "https://files.example/shot.png",
        "thumb_url": "https://files.example/t.png", "image?": True}])
    [att] = rz_conn.list_comments(slug)[-1].attachments
    assert (att.name, att.content_type, att.size, att.url) == (
        "shot.png", "image/png", 69892, "https://files.example/shot.png")


def test_attachments_are_written_by_url(rz_conn: ReamazeConnector,
                                        rz_sim: ReamazeSimulator) -> None:
    """Attachments with URLs go out as attachment/attachments; ones without are skipped."""
    slug = rz_sim.add_conversation("Logs", "b", "cu@x.example")
    one = rz_conn.create_comment(slug, NewComment(
        body="log", visibility=Visibility.INTERNAL, marker="rs-a1",
        attachments=(Attachment(name="app.log", url="https://t.example/app.log"),)))
    assert _posted(rz_sim)["attachment"] == "https://t.example/app.log"
    assert [a.name for a in one.attachments] == ["app.log"]
    two = rz_conn.create_comment(slug, NewComment(
        body="logs", visibility=Visibility.INTERNAL, marker="rs-a2",
        attachments=(Attachment(name="a.png", url="https://t.example/a.png"),
                     Attachment(name="b.pdf", url="https://t.example/b.pdf"),
                     Attachment(name="local-only"))))
    assert _posted(rz_sim)["attachments"] == ["https://t.example/a.png", "https://t.example/b.pdf"]
    assert [(a.name, a.content_type) for a in two.attachments] == [
        ("a.png", "image/png"), ("b.pdf", "application/pdf")]


def test_comments_of_an_unknown_conversation_are_not_found(rz_conn: ReamazeConnector) -> None:
    """Listing or writing messages on a missing conversation raises NotFoundError."""
    with pytest.raises(NotFoundError):
        rz_conn.list_comments("ghost")
    with pytest.raises(NotFoundError):
        rz_conn.create_comment("ghost", NewComment(body="x", visibility=Visibility.PUBLIC,
                                                marker="rs-g"))


def test_messages_are_read_with_their_html(rz_conn: ReamazeConnector,
                                           rz_sim: ReamazeSimulator) -> None:
    """Messages are listed with ``include=original_body``: the HTML comes with the plain
    body, and a body with markup characters is HTML-escaped in the simulator's HTML."""
    slug = rz_sim.add_conversation("Steps", "a <b> & c", "cu@x.example")
    rz_sim.add_customer_message(slug, "- step 1\n- step 2",
                                html="<ul><li>step 1</li><li>step 2</li></ul>")
    first, second = rz_conn.list_comments(slug)
    assert (first.body, first.body_html) == ("a <b> & c", "<p>a &lt;b&gt; &amp; c</p>")
    assert (second.body, second.body_html) == ("- step 1\n- step 2",
                                               "<ul><li>step 1</li><li>step 2</li></ul>")
    listings = [c for c in rz_sim.calls("GET") if c.path.endswith("/messages")]
    assert listings and all(c.params.get("include") == "original_body" for c in listings)


def test_messages_without_html_have_none(rz_conn: ReamazeConnector, rz_raw: httpx.Client,
                                         seeded: str) -> None:
    """Where Re:amaze sends no ``original_body`` the comment has no HTML (the engine then
    escapes the plain body)."""
    raw = rz_raw.get(f"/conversations/{seeded}/messages").json()["messages"]
    assert all("original_body" not in m for m in raw)
    comments = comments_from_wire(seeded, [WireMessage.model_validate(m) for m in raw])
    assert comments and all(c.body_html is None for c in comments)
