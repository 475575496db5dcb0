"""The whole engine between the Re:amaze simulator and the GitHub simulator: a bug becomes
an issue with its labels, public messages go both ways, internal notes never reach GitHub
(whatever the policy), the issue's closing moves the conversation, quiet runs write
nothing, and a lost state database re-adopts the issue instead of duplicating it."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_support import run_pass
from github_support import REPO, World
from hypothesis import given, settings
from hypothesis import strategies as st

PUBLIC, INTERNAL = 0, 1
STAFF = "jane@acme.example"


@pytest.mark.parametrize("app", [False, True], ids=["token", "github-app"])
def test_a_bug_conversation_round_trips_through_github(tmp_path: Path, app: bool) -> None:
    w = World(f"sqlite:///{tmp_path / 'state.db'}", tag_to_label={"bug": "bug"}, app=app)
    slug = w.reamaze.add_conversation("Crash on save", "It crashes when I save.",
                                      "carol@customer.example", tags=["bug"])
    w.reamaze.add_staff_message(slug, "INTERNAL-1 customer on the Enterprise plan",
                                email=STAFF, visibility=INTERNAL)
    w.reamaze.add_staff_message(slug, "Thanks, looking into it.", email=STAFF)
    engine = w.engine()
    run_pass(engine)
    [issue] = w.issues()
    assert issue.title == "[Re:amaze] Crash on save" and issue.labels == ["bug"]
    assert issue.author == ("acme-sync[bot]" if app else "sync-bot")
    assert "INTERNAL-1" not in w.everything_on_github()
    assert any("looking into it" in body for body in w.comments(issue.number))
    link_notes = [m for m in w.reamaze.conversations[slug].messages
                  if f"github.com/{REPO}/issues/1" in m.body]
    assert [m.visibility for m in link_notes] == [INTERNAL]

    w.gh.sim.clock.advance(5)
    w.gh.person().post(f"/repos/{REPO}/issues/1/comments", json={"body": "Fix is coming."})
    run_pass(engine)
    copies = [m for m in w.reamaze.conversations[slug].messages if "Fix is coming" in m.body]
    assert [(m.visibility, m.notified) for m in copies] == [(INTERNAL, False)]

    w.gh.sim.clock.advance(5)
    w.gh.sim.set_state(w.gh.repo, "dev-dana", 1, "closed")
    run_pass(engine)
    assert w.reamaze.conversations[slug].status == 2  # Done
    before = len(w.gh.writes())
    reamaze_before = len(w.reamaze.calls("POST")) + len(w.reamaze.calls("PUT"))
    run_pass(engine)
    assert len(w.gh.writes()) == before
    assert len(w.reamaze.calls("POST")) + len(w.reamaze.calls("PUT")) == reamaze_before
    engine.close()

    (tmp_path / "state.db").unlink()  # lost state: the issue is re-adopted, not duplicated
    again = w.engine()
    run_pass(again)
    assert len(w.issues()) == 1
    assert len(w.gh.writes()) == before
    again.close()


@settings(max_examples=30, deadline=None)
@given(policy=st.sampled_from(["skip", "placeholder"]),
       customer_replies=st.booleans(), pii=st.booleans(),
       notes=st.lists(st.tuples(st.booleans(), st.integers(0, 999)), min_size=1, max_size=5))
def test_internal_notes_never_reach_github_whatever_the_policy(
        policy: str, customer_replies: bool, pii: bool, notes: list[tuple[bool, int]]) -> None:
    w = World(visibility={"internal_to_public_tracker": policy,
                          "customer_replies_from_tracker": customer_replies,
                          "include_customer_pii": pii})
    slug = w.reamaze.add_conversation("Bug", "Public start.", "carol@customer.example",
                                      tags=["bug"])
    secrets = []
    for internal, n in notes:
        text = f"{'SECRET' if internal else 'OPEN'}-{n}-{len(secrets)}"
        w.reamaze.add_staff_message(slug, text, email=STAFF,
                                    visibility=INTERNAL if internal else PUBLIC)
        if internal:
            secrets.append(text)
    engine = w.engine()
    run_pass(engine)
    run_pass(engine)
    on_github = w.everything_on_github()
    assert not any(s in on_github for s in secrets)
    placeholders = sum("An internal note was added" in b for b in w.comments(1))
    assert placeholders == (len(secrets) if policy == "placeholder" else 0)
    engine.close()


@pytest.mark.parametrize("text", ["@octocat look", "see #12 and GH-7", "acme/app#3 too"])
def test_customer_text_pings_and_links_nobody(text: str) -> None:
    w = World()
    slug = w.reamaze.add_conversation("Bug", text, "carol@customer.example", tags=["bug"])
    w.reamaze.add_staff_message(slug, f"Reply: {text}", email=STAFF)
    engine = w.engine()
    run_pass(engine)
    for body in [w.issues()[0].body or "", *w.comments(1)]:
        assert "@octocat" not in body and "#12" not in body and "GH-7" not in body
        assert "app#3" not in body
    engine.close()


def test_the_demo_runs_against_the_github_simulator() -> None:
    """`reamaze-sync demo --tracker github` needs no credentials and tells the story: an
    issue created with its label, the internal note kept off GitHub, the developer's
    comment and closing brought back, a quiet last pass."""
    from click.testing import CliRunner

    from syncer.cli import main

    result = CliRunner().invoke(main, ["demo", "--tracker", "github"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "GitHub issue acme/app#1 created, labelled 'bug'" in out
    assert "Linked to GitHub issue #1" in out
    github_lines = [line for line in out.splitlines() if "[public  ] sync-bot:" in line]
    assert github_lines and not any("Enterprise plan" in line for line in github_lines)
    assert "dana-dev commented on GitHub issue #1" in out
    assert "state=closed" in out and "writes: none" in out


def test_files_reach_github_as_links(tmp_path: Path) -> None:
    """GitHub's API takes no uploads: a customer's file is listed with its link."""
    w = World(f"sqlite:///{tmp_path / 'state.db'}")
    slug = w.reamaze.add_conversation("Crash on save", "It crashes.", "carol@customer.example",
                                      tags=["bug"])
    engine = w.engine()
    run_pass(engine)
    w.reamaze.add_customer_message(slug, "The log.", attachments=[
        w.reamaze.host_file("crash.log", b"trace" * 500, "text/plain")])
    run_pass(engine)
    [copy] = [b for b in w.comments(1) if "The log." in b]
    assert "crash.log (2 KB): https://acme.reamaze.com/attachments/" in copy
    engine.close()
