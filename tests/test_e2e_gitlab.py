"""The whole engine between the Re:amaze simulator and the GitLab simulator: a bug becomes
an issue with its label and assignee, the back-link note is internal, messages go both
ways with their visibility (an internal note stays internal on both sides), attachments
go as links, the issue's closing moves the conversation, quiet runs write nothing, a
create whose answer was lost is found instead of doubled, and a lost state database
re-adopts the issue instead of duplicating it."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_support import run_pass
from gitlab_support import PROJECT, STAFF, GitLabWorld, World

from connectors.gitlab.sim import GitLabSimulator
from syncer.app import run_all_once

SHOT = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
PUBLIC, INTERNAL = 0, 1


def test_a_bug_conversation_round_trips_through_gitlab(tmp_path: Path) -> None:
    w = World(f"sqlite:///{tmp_path / 'state.db'}", tag_to_label={"bug": "bug"},
              staff_to_user={STAFF: "dev-dana"},
              status={"on_conversation_closed": "close_issue",
                      "on_conversation_reopened": "reopen_issue"})
    slug = w.reamaze.add_conversation("Crash on save", "It crashes when I save.",
                                      "carol@customer.example", tags=["bug"], assignee=STAFF)
    w.reamaze.add_staff_message(slug, "INTERNAL-1 customer on the Enterprise plan",
                                email=STAFF, visibility=INTERNAL)
    with w.reamaze.lock:
        w.reamaze.post_message(
            w.reamaze.conversations[slug], "Screenshot attached.", w.reamaze.staff[STAFF],
            PUBLIC, attachments=[w.reamaze.host_file("shot.png", SHOT, "image/png")])
    engine = w.engine()
    run_pass(engine)
    [issue] = w.issues()
    assert issue.title == "[Re:amaze] Crash on save" and issue.labels == ["bug"]
    assert issue.author == "sync-bot" and issue.assignees == ["dev-dana"]
    notes = w.gl.notes(issue.iid)
    internal = [n.body for n in notes if n.internal]
    assert any("INTERNAL-1" in body for body in internal)
    assert "INTERNAL-1" not in w.everything_public_on_gitlab()
    [shot] = [n for n in notes if "Screenshot attached" in n.body]
    assert not shot.internal and "reamaze.com/attachments/" in shot.body
    assert "shot.png](/uploads/" in shot.body  # uploaded to the project, byte for byte
    assert [data for name, data in w.gl.project.uploads.values() if name == "shot.png"] == [SHOT]
    link_notes = [m for m in w.reamaze.conversations[slug].messages
                  if f"gitlab.com/{PROJECT}/-/issues/1" in m.body]
    assert [m.visibility for m in link_notes] == [INTERNAL]

    # A developer's public note and internal note come back; the internal one as internal.
    w.gl.sim.clock.advance(5)
    with w.gl.person() as dev:
        base = f"/projects/{PROJECT.replace('/', '%2F')}/issues/1/notes"
        dev.post(base, json={"body": "Fix is coming."}).raise_for_status()
        dev.post(base, json={"body": "DEV-SECRET root cause in billing",
                             "internal": True}).raise_for_status()
    run_pass(engine)
    messages = w.reamaze.conversations[slug].messages
    assert [m.visibility for m in messages if "Fix is coming" in m.body] == [INTERNAL]
    assert [(m.visibility, m.notified) for m in messages if "DEV-SECRET" in m.body] == [
        (INTERNAL, False)]

    # Closing on GitLab closes the conversation; a status, label and assignee change
    # made there writes no system note back as a comment.
    w.gl.sim.clock.advance(5)
    w.gl.sim.set_state(w.gl.project, "dev-dana", 1, "closed")
    run_pass(engine)
    assert w.reamaze.conversations[slug].status == 2  # Done
    assert w.gl.notes(1, system=True)  # GitLab noted the closing, and it stays there
    assert not any(m.body.endswith("\n\nclosed") for m in w.reamaze.conversations[slug].messages)

    # Re-opened in Re:amaze (a customer writes again): the issue reopens.
    w.reamaze.add_customer_message(slug, "Still broken!")
    run_pass(engine)
    assert w.issues()[0].state == "opened"

    before = len(w.gl.writes())
    reamaze_before = len(w.reamaze.calls("POST")) + len(w.reamaze.calls("PUT"))
    run_pass(engine)
    assert len(w.gl.writes()) == before
    assert len(w.reamaze.calls("POST")) + len(w.reamaze.calls("PUT")) == reamaze_before
    engine.close()

    (tmp_path / "state.db").unlink()  # lost state: the issue is re-adopted, not duplicated
    again = w.engine()
    run_pass(again)
    assert len(w.issues()) == 1
    assert len(w.gl.writes()) == before
    again.close()


def test_a_create_whose_answer_was_lost_is_found_not_doubled() -> None:
    """The issue create lands but its answer times out: the engine finds the issue by its
    marker and goes on; one issue, its note once."""
    w = World()
    slug = w.reamaze.add_conversation("Bug", "Public start.", "carol@customer.example",
                                      tags=["bug"])
    w.reamaze.add_staff_message(slug, "Looking.", email=STAFF)
    lost_issue = w.gl.sim.faults.add(timeout=True, commit=True, method="POST",
                                     path=r"/projects/.+/issues$")
    lost_note = w.gl.sim.faults.add(timeout=True, commit=True, method="POST", path=r"/notes$")
    engine = w.engine()
    run_all_once(engine)
    run_pass(engine)
    assert (lost_issue.hits, lost_note.hits) == (1, 1)
    assert len(w.issues()) == 1
    bodies = [n.body for n in w.gl.notes(1)]
    assert sum("Looking." in b for b in bodies) == 1
    engine.close()


def test_internal_notes_on_a_gitlab_without_internal_notes_never_stay_public() -> None:
    """An old GitLab answers notes without ``internal``/``confidential``: the copy of an
    internal note is not provably private, so it is deleted again and reported, and none
    is left public."""
    gl = GitLabWorld(sim=GitLabSimulator(notes_flag=None))
    w = World(gl=gl)
    slug = w.reamaze.add_conversation("Bug", "Public start.", "carol@customer.example",
                                      tags=["bug"])
    w.reamaze.add_staff_message(slug, "SECRET-9 do not share", email=STAFF,
                                visibility=INTERNAL)
    engine = w.engine()
    [result] = run_all_once(engine)
    assert result.counts["leaks_removed"] == 1 and not result.clean
    assert "SECRET-9" not in w.everything_public_on_gitlab()
    posted = len(w.gl.writes())
    w.gl.clock.sleep(3600)  # past every cache: the connector still knows not to try
    w.reamaze.add_staff_message(slug, "SECRET-10 another", email=STAFF, visibility=INTERNAL)
    [again] = run_all_once(engine)
    assert not again.counts["leaks_removed"] and len(w.gl.writes()) == posted
    assert "SECRET" not in w.everything_public_on_gitlab()
    assert w.issues(), "the issue itself is created"
    engine.close()


@pytest.mark.parametrize("text", ["@octocat look", "see #12 and !7", "acme/app#3 too",
                                  "~bug and %v1.0", "&12 and $4"])
def test_customer_text_pings_and_links_nobody(text: str) -> None:
    w = World()
    slug = w.reamaze.add_conversation("Bug", text, "carol@customer.example", tags=["bug"])
    w.reamaze.add_staff_message(slug, f"Reply: {text}", email=STAFF)
    engine = w.engine()
    run_pass(engine)
    bodies = [w.issues()[0].description or "", *(n.body for n in w.gl.notes(1))]
    for body in bodies:
        for ref in ("@octocat", "#12", "!7", "app#3", "~bug", "%v1", "&12", "$4"):
            assert ref not in body
    engine.close()


def test_the_demo_runs_against_the_gitlab_simulator() -> None:
    """`reamaze-sync demo --tracker gitlab` needs no credentials and tells the story: an
    issue created with its label, the internal note internal on GitLab, the developer's
    notes brought back (the internal one internal), the closing, a quiet last pass."""
    from click.testing import CliRunner

    from syncer.cli import main

    result = CliRunner().invoke(main, ["demo", "--tracker", "gitlab"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "GitLab issue acme/app#1 created, labelled 'bug'" in out
    assert "Linked to GitLab issue #1" in out
    public = [line for line in out.splitlines() if "[public  ] sync-bot:" in line]
    assert public and not any("internal note" in line for line in public)
    assert any("[INTERNAL] sync-bot:" in line and "Re:amaze internal note" in line
               for line in out.splitlines())
    assert "dana-dev commented on GitLab issue #1: Root cause" in out
    assert "state=closed" in out and "writes: none" in out
