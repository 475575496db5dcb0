"""Reverse creation under the crash matrix's faults (``crash_matrix.Injector``): a story
of two passes (an issue that opens a conversation; then notes on both sides) is played
once per remote write and state commit, with the process killed or an exception raised
just before or just after it. After each, the engine restarts (kill) or goes on (raise),
settles, and both sides must show exactly one conversation with the issue's details in
one internal note, every note copied once and privately, and nothing made public or
emailed by the sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crash_matrix import Injector, Outcome, Point, faults_of, points_of, quiet_logs
from crash_story import FaultedStory
from e2e_support import (
    QUICK_RECOVERY,
    STAFF,
    Engineer,
    SimulatedCrash,
    journals,
    messages,
    sandbox,
)

from syncer.reconcile_reverse import OPENING
from syncer.sandbox import LOGIN, PROJECT

PAIR = "bugs"
CUSTOMER = "hana@customer.example"
REVERSE: dict[str, Any] = {"enabled": True, "tracker_ids": [1],
                           "fallback_contact": "support@acme.example"}
TOKENS = {"TR-DETAILS": "the issue's details", "TR-PUB": "a public Redmine note",
          "TR-PRIV": "a private Redmine note", "HD-INT": "an internal Re:amaze note"}


class ReverseStory(FaultedStory):
    def __init__(self, tmp: Path, injector: Injector) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        super().__init__(sandbox(tmp, reverse=REVERSE, sync=QUICK_RECOVERY), injector)
        self.issue_id = 0

    def run(self) -> None:
        project = next(p for p in self.sb.redmine.state.projects.values()
                       if p.identifier == PROJECT)
        self.issue_id = self.sb.redmine.add_issue(
            project, "Export drops rows", description=f"TR-DETAILS the last row is lost.\n"
            f"Customer: {CUSTOMER}").id
        self.run_pass()
        dev = Engineer(self.sb)
        dev.note(self.issue_id, "TR-PUB found the off-by-one")
        dev.note(self.issue_id, "TR-PRIV customer is on the old plan", private=True)
        if len(self.sb.reamaze.conversations) == 1:
            [slug] = self.sb.reamaze.conversations
            self.sb.reamaze.add_staff_message(slug, "HD-INT they need it by Friday",
                                              email=STAFF, visibility=1)
        self.run_pass()
        self.injector.counting = False
        self.settle("at the end")


def check(story: ReverseStory) -> list[str]:
    problems = list(story.unsettled)
    convs = story.sb.reamaze.conversations
    if len(convs) != 1:
        return [*problems, f"{len(convs)} conversations for one issue"]
    [slug] = convs
    conv = convs[slug]
    link = story.engine.store.get_link_by_issue(PAIR, str(story.issue_id))
    if link is None or link.conversation_id != slug:
        problems.append(f"the issue's link is {link}")
    if conv.author.email != CUSTOMER:
        problems.append(f"the conversation is {conv.author.email}'s")
    msgs = messages(story.sb, slug)
    for token, what in TOKENS.items():
        if token == "HD-INT":
            continue
        found = [(m.visibility, m.notified) for m in msgs if token in m.body]
        if found != [(1, False)]:
            problems.append(f"{what} in Re:amaze: {found}")
    for m in msgs:
        if (m.author.email == LOGIN and (m.visibility != 1 or m.notified)) or (
                m.body == OPENING and m.notified):
            problems.append(f"the sync's message is public or emailed: {m.body[:40]!r}")
    notes = journals(story.sb, story.issue_id)
    hd = [n.private for n in notes if "HD-INT" in n.text]
    if hd != [True]:
        problems.append(f"the internal Re:amaze note on Redmine: {hd}")
    for token in ("TR-PUB", "TR-PRIV"):  # the engineer's own notes, and no echo of them
        if sum(token in n.text for n in notes) != 1:
            problems.append(f"{token} on Redmine {sum(token in n.text for n in notes)} times")
    if any("TR-DETAILS" in n.text or OPENING in n.text for n in notes):
        problems.append("the opening or the details note echoed to Redmine")
    return problems


def run_story(tmp: Path, point: Point | None = None) -> Outcome:
    injector = Injector(point)
    with quiet_logs():
        story = ReverseStory(tmp, injector)
        try:
            story.run()
            problems = check(story)
        except (Exception, SimulatedCrash) as exc:
            problems = [f"the story stopped: {exc!r}"]
        finally:
            story.engine.close()
    if point is not None and injector.fired is None:
        problems.append("the fault never fired")
    return Outcome(point, injector.fired, injector.writes, injector.commits, injector.events,
                   problems, story.restarts)


def test_the_reverse_story_is_right_without_faults(tmp_path: Path) -> None:
    """Without faults the checks pass, and they are not vacuous: a second conversation
    is reported."""
    outcome = run_story(tmp_path / "baseline")
    assert outcome.problems == []
    assert any("POST /api/v1/conversations" in w for w in outcome.writes)
    story = ReverseStory(tmp_path / "dup", Injector())
    with quiet_logs():
        story.run()
        story.sb.reamaze.add_conversation("Export drops rows", OPENING, CUSTOMER)
        assert "2 conversations for one issue" in check(story)[-1]
        story.engine.close()


def test_every_write_and_commit_of_reverse_creation_survives_a_crash_there(
        tmp_path: Path) -> None:
    """Killed or failed at any write or commit, before or after it: one conversation,
    every note once and private, nothing public or emailed by the sync."""
    baseline = run_story(tmp_path / "baseline")
    assert baseline.problems == []
    failures: dict[str, list[str]] = {}
    points = points_of(baseline)
    for n, point in enumerate(points):
        outcome = run_story(tmp_path / f"point-{n:03d}", point)
        wrong = faults_of(baseline, outcome)
        if wrong:
            failures[str(point)] = wrong
    assert not failures, failures
    assert len(points) >= 40
