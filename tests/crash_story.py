"""The crash matrix's story and its checks (see ``crash_matrix``): what happens on both
sides over six passes, and everything that must be true of both sides and the state at
the end, whatever fault struck on the way."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from e2e_support import QUICK_RECOVERY, STAFF, Engineer, Mark, SimulatedCrash, sandbox
from fakes import FakeClock

from connectors.redmine.sim.state import SimIssue
from syncer.app import Engine, run_all_once
from syncer.markers import Markers
from syncer.sandbox import LOGIN, MARKER_KEY, Sandbox, sandbox_config

if TYPE_CHECKING:
    from crash_matrix import Injector

PUBLIC, INTERNAL = 0, 1  # Re:amaze message visibility
DONE = 2  # Re:amaze status of a closed conversation
REDMINE_CLOSED = 5

PAIR = "bugs"
CLOSE_REPLY = "Good news: {subject} is fixed (issue #{issue_id})."
EDITED = "EDITED-1"  # in the engineer's corrected note, and so in the note telling of it
Copy = Literal["public note", "private note", "description", "customer reply", "internal note"]


@dataclass(frozen=True)
class Msg:
    """A person's message on one side, and the one copy it must have on the other."""

    slug: str
    token: str  # in its body, and in no other message's
    copy: Copy

    @property
    def secret(self) -> bool:
        """Internal on its own side: must never be seen by a customer or publicly."""
        return self.token.split("-")[2] in ("INT", "PRIV")

    @property
    def source(self) -> Literal["reamaze", "redmine"]:
        return "reamaze" if self.token.startswith("HD-") else "redmine"


def _config(tmp: Path) -> dict[str, Any]:
    """The history of a new issue goes into its description (transcript: public messages
    only), later messages as notes; public Redmine notes are emailed to the customer, and
    so is a reply when the issue closes."""
    return sandbox_config(f"sqlite:///{tmp / 'state.db'}", sync=QUICK_RECOVERY,
                          history="transcript",
                          visibility={"customer_replies_from_tracker": True},
                          status={"close_reply_template": CLOSE_REPLY})


class FaultedStory:
    """The engine side of a story played under the crash matrix's faults: an engine on
    the sandbox's state, restarted after a kill, and passes until quiet."""

    def __init__(self, sb: Sandbox, injector: Injector) -> None:
        self.sb = sb
        self.injector = injector
        self.engine = self._engine()
        self.restarts = 0
        self.unsettled: list[str] = []

    def _engine(self) -> Engine:
        live = not self.injector.dead
        self.sb.wrap = self.injector.wrap if live else None
        engine = self.sb.engine(clock=FakeClock())
        if live:
            self.injector.attach(engine.store)
        return engine

    def run_pass(self, **kw: Any) -> None:
        """A pass of the story. When the fault strikes in it, the engine (restarted after
        a kill) catches up before anyone acts again: a change a person makes and undoes
        between two passes is never seen by a sync that compares states, crash or not."""
        fired = self.injector.fired
        self._pass(**kw)
        if self.injector.fired != fired:
            self.settle("after the fault")

    def _pass(self, **kw: Any) -> bool:
        """One pass; True when it wrote nothing, was clean and left nothing pending."""
        mark = Mark.now(self.sb)
        try:
            results = run_all_once(self.engine, **kw)
        except SimulatedCrash:
            # Killed. Its pair lock was released on the way out (the kernel drops a dead
            # process's flock); its connections are closed here. A new process opens the
            # same state file.
            self.engine.close()
            self.restarts += 1
            self.engine = self._engine()
            return False
        return not mark.writes() and all(r.clean for r in results) and not self.pending()

    def settle(self, when: str, limit: int = 8) -> None:
        """Passes until one writes nothing, is clean and leaves nothing pending (at the
        end, also the check that a synced world causes no echo)."""
        for _ in range(limit):
            if self._pass():
                return
        self.unsettled.append(f"{when}: {limit} passes still wrote, failed or left writes "
                              f"pending ({self.pending()})")

    def pending(self) -> list[str]:
        return [f"{i.kind} {i.key}" for i in self.engine.store.pending_intents(PAIR)
                if i.status == "pending"]


class Story(FaultedStory):
    """Two conversations over six passes: a backfill (public messages, staff and
    customer, into the new issues' descriptions; internal notes as private notes; a link
    note each); comments both ways (a public and an internal note to Redmine; a public
    and a private Redmine note into Re:amaze as a customer reply and an internal note);
    the issue closed (the conversation closed and the customer mailed); the state rolled
    back to a backup from before the comments (everything since re-adopted from what both
    sides show); the private Redmine note edited and the public one deleted (an internal
    note each in Re:amaze), the issue reopened and closed again (a second reply)."""

    def __init__(self, tmp: Path, injector: Injector) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        super().__init__(sandbox(tmp, config=_config(tmp)), injector)
        self.sent: list[Msg] = []
        self.slugs: list[str] = []
        self.statuses: dict[str, int] = {}  # slug -> the Re:amaze status it must end with
        self.dev: Engineer | None = None
        self.deleted: int | None = None  # the Redmine note the engineer deleted

    def _reopen(self, between: Callable[[], object]) -> None:
        self.engine.close()
        between()
        self.engine = self._engine()

    # -- the steps ---------------------------------------------------------------------
    def run(self) -> None:
        """The story, then passes until all is done; the points are the story's."""
        self.play()
        self.injector.counting = False
        self.settle("at the end")

    def play(self) -> None:
        self.seed()
        self.run_pass(kind="backfill", full=True)
        self.backup()
        self.comments()
        self.run_pass()
        self.close_issue()
        self.run_pass()
        self.roll_back()
        self.run_pass()
        self.edit_notes()
        self.reopen_issue()
        self.run_pass()
        self.close_issue()
        self.run_pass()

    def seed(self) -> None:
        rz = self.sb.reamaze
        a = rz.add_conversation("Crash on save", "HD-A-PUB-1 saving a draft crashes the app.",
                                "carol@customer.example", tags=["bug"])
        rz.add_staff_message(a, "HD-A-PUB-2 thanks, which version?", email=STAFF,
                             suppress_autoresolve=True)
        rz.add_staff_message(a, "HD-A-INT-1 reproduced on Android 14", email=STAFF,
                             visibility=INTERNAL)
        c = rz.add_conversation("Sync stalls", "HD-C-PUB-1 my phone stopped syncing.",
                                "dave@customer.example", tags=["bug"])
        rz.add_staff_message(c, "HD-C-INT-1 same root cause as the crash?", email=STAFF,
                             visibility=INTERNAL)
        self.slugs = [a, c]
        self.statuses = {a: DONE, c: rz.conversations[c].status}
        self.sent += [Msg(a, "HD-A-PUB-1", "description"), Msg(a, "HD-A-PUB-2", "description"),
                      Msg(a, "HD-A-INT-1", "private note"), Msg(c, "HD-C-PUB-1", "description"),
                      Msg(c, "HD-C-INT-1", "private note")]

    def comments(self) -> None:
        a = self.slugs[0]
        rz = self.sb.reamaze
        rz.add_customer_message(a, "HD-A-PUB-3 it also happens on tablets.")
        rz.add_staff_message(a, "HD-A-INT-2 linked to the sync rewrite", email=STAFF,
                             visibility=INTERNAL)
        dev = self._dev()
        dev.note(self.issue_id(a), "TR-A-PUB-1 fixed in 2.4, please update.")
        dev.note(self.issue_id(a), "TR-A-PRIV-1 the cache was stale", private=True)
        self.sent += [Msg(a, "HD-A-PUB-3", "public note"), Msg(a, "HD-A-INT-2", "private note"),
                      Msg(a, "TR-A-PUB-1", "customer reply"),
                      Msg(a, "TR-A-PRIV-1", "internal note")]

    def edit_notes(self) -> None:
        """The engineer corrects the private note and deletes the public one (blanks it,
        Redmine's delete): each is told once in Re:amaze as an internal note."""
        dev = self._dev()
        journals = {j.notes.split(" ", 1)[0]: j.id
                    for j in self.sb.redmine.state.journals.values() if j.notes}
        for token, text in (("TR-A-PRIV-1", f"TR-A-PRIV-1 {EDITED} the index was stale"),
                            ("TR-A-PUB-1", "")):
            dev.sim.clock.advance(2)
            answer = dev.http.put(f"/journals/{journals[token]}.json",
                                  json={"journal": {"notes": text}})
            assert answer.status_code == 204, answer.text
        self.deleted = journals["TR-A-PUB-1"]

    def close_issue(self) -> None:
        self._dev().close(self.issue_id(self.slugs[0]))

    def reopen_issue(self) -> None:
        self._dev().reopen(self.issue_id(self.slugs[0]))

    def backup(self) -> None:
        self._reopen(lambda: shutil.copy(self.tmp / "state.db", self.tmp / "backup.db"))

    def roll_back(self) -> None:
        """The state database is restored from the backup: what happened since is known
        only from what both sides show."""
        def restore() -> None:
            for name in ("state.db", "state.db-wal", "state.db-shm"):
                (self.tmp / name).unlink(missing_ok=True)
            shutil.copy(self.tmp / "backup.db", self.tmp / "state.db")
        self._reopen(restore)

    def _dev(self) -> Engineer:
        self.dev = self.dev or Engineer(self.sb)
        return self.dev

    # -- reading the world ----------------------------------------------------------------
    def issues_of(self, slug: str) -> list[SimIssue]:
        """The issues carrying the conversation's marker."""
        marker = Markers(MARKER_KEY.encode(), PAIR).issue(slug)
        return sorted((i for i in self.sb.redmine.state.issues.values()
                       if marker in (i.description or "")), key=lambda i: i.id)

    def issue_id(self, slug: str) -> int:
        """The conversation's issue. A person waits for the sync to make it: after a
        crash its create may be held for a pass or two."""
        for _ in range(6):
            found = self.issues_of(slug)
            if found:
                return found[0].id
            self._pass()
        raise AssertionError(f"{slug} never got an issue")



# --- the checks ---------------------------------------------------------------------------

def check(story: Story) -> list[str]:
    """Everything wrong with both sides and the state after the story; empty when all is
    well."""
    problems = list(story.unsettled)
    issues = _check_issues(story, problems)
    _check_copies(story, issues, problems)
    _check_privacy(story, problems)
    _check_conversations(story, issues, problems)
    _check_state(story, problems)
    return problems


def _check_issues(story: Story, problems: list[str]) -> dict[str, SimIssue]:
    """One issue per conversation, linked in the state; the engineer's closing kept."""
    rm = story.sb.redmine.state
    if len(rm.issues) != len(story.slugs):
        problems.append(f"{len(rm.issues)} issues for {len(story.slugs)} conversations")
    issues: dict[str, SimIssue] = {}
    for slug in story.slugs:
        found = story.issues_of(slug)
        if len(found) != 1:
            problems.append(f"{slug}: {len(found)} issues")
            continue
        issues[slug] = found[0]
        link = story.engine.store.get_link(PAIR, slug)
        if link is None or link.issue_id != str(found[0].id) or link.status != "active":
            problems.append(f"{slug}: state link {link} for issue {found[0].id}")
        closed = story.statuses[slug] == DONE
        if (found[0].status_id == REDMINE_CLOSED) != closed:
            problems.append(f"{slug}: issue status {found[0].status_id}")
    return issues


def _check_copies(story: Story, issues: dict[str, SimIssue], problems: list[str]) -> None:
    """Every person's message has exactly one copy, in the place and with the visibility
    (and the customer email) its pair's policy gives it."""
    sb = story.sb
    notes = [j for j in sb.redmine.state.journals.values() if j.notes]
    for m in story.sent:
        found: list[tuple[object, ...]]
        want: list[tuple[object, ...]]
        if m.source == "reamaze":
            found = [("private note" if j.private_notes else "public note", j.issue_id)
                     for j in notes for _ in range((j.notes or "").count(m.token))]
            found += [("description", i.id) for i in sb.redmine.state.issues.values()
                      for _ in range((i.description or "").count(m.token))]
            want = [(m.copy, issues[m.slug].id)] if m.slug in issues else found
        else:
            found = [("customer reply" if msg.visibility == PUBLIC else "internal note",
                      c.slug, msg.notified)
                     for c in sb.reamaze.conversations.values() for msg in c.messages
                     if m.token in msg.body and msg.author.email == LOGIN
                     and EDITED not in msg.body]
            want = [(m.copy, m.slug, m.copy == "customer reply")]
        if found != want:
            problems.append(f"{m.token}: copies {found}, expected {want}")
    bot = next(u for u in sb.redmine.state.users.values() if u.api_key == sb.redmine.admin_key)
    ours = [j for j in sb.redmine.state.journals.values() if j.user_id == bot.id]
    expected = [m for m in story.sent if m.copy in ("public note", "private note")]
    if len(ours) != len(expected) or any(not j.notes for j in ours):
        problems.append(f"the sync wrote {len(ours)} journals on Redmine "
                        f"({sum(1 for j in ours if not j.notes)} emptied: a removed leak?), "
                        f"expected {len(expected)} notes")


def _check_privacy(story: Story, problems: list[str]) -> None:
    """Internal content is never public: not in a public note or a description on
    Redmine, not in a public Re:amaze message."""
    secrets = [m.token for m in story.sent if m.secret]
    for j in story.sb.redmine.state.journals.values():
        if not j.private_notes and any(t in (j.notes or "") for t in secrets):
            problems.append(f"internal content in public journal {j.id}")
    for i in story.sb.redmine.state.issues.values():
        if any(t in (i.description or "") for t in secrets):
            problems.append(f"internal content in the description of issue {i.id}")
    for c in story.sb.reamaze.conversations.values():
        for msg in c.messages:
            if msg.visibility == PUBLIC and any(t in msg.body for t in secrets):
                problems.append(f"{c.slug}: internal content in a public message")


def _check_conversations(story: Story, issues: dict[str, SimIssue],
                         problems: list[str]) -> None:
    """What the sync itself wrote in Re:amaze: one link note per conversation, one
    customer email per closing, the copies checked above, nothing else; the status the
    story leaves."""
    sb = story.sb
    if len(sb.reamaze.conversations) != len(story.slugs):
        problems.append(f"{len(sb.reamaze.conversations)} conversations in Re:amaze")
    for slug, conv in sb.reamaze.conversations.items():
        ours = [msg for msg in conv.messages if msg.author.email == LOGIN]
        issue = issues.get(slug)
        links = [(msg.visibility, msg.notified, issue is not None and f"#{issue.id}:" in msg.body)
                 for msg in ours if msg.body.startswith("Linked to Redmine issue")]
        if links != [(INTERNAL, False, True)]:
            problems.append(f"{slug}: link notes (visibility, emailed, issue) {links}")
        replies = [(msg.visibility, msg.notified) for msg in ours
                   if msg.body.startswith("Good news")]
        closings = 2 if story.statuses[slug] == DONE else 0
        if replies != [(PUBLIC, True)] * closings:
            problems.append(f"{slug}: close replies (visibility, emailed) {replies}, "
                            f"expected {closings}")
        edits = [(msg.visibility, msg.notified) for msg in ours
                 if EDITED in msg.body or f"Note {story.deleted} on Redmine" in msg.body]
        told = 2 if slug == story.slugs[0] and story.deleted is not None else 0
        if edits != [(INTERNAL, False)] * told:
            problems.append(f"{slug}: edit and delete notes (visibility, emailed) {edits}, "
                            f"expected {told}")
        copies = sum(1 for m in story.sent if m.slug == slug and m.source == "redmine")
        if len(ours) != len(links) + len(replies) + copies + len(edits):
            problems.append(f"{slug}: {len(ours)} messages by the sync, expected "
                            f"{len(links) + len(replies) + copies + len(edits)}")
        if conv.status != story.statuses[slug]:
            problems.append(f"{slug}: status {conv.status}, expected {story.statuses[slug]}")


def _check_state(story: Story, problems: list[str]) -> None:
    store = story.engine.store
    if story.pending():
        problems.append(f"intents left pending: {story.pending()}")
    if store.open_leaks(PAIR):
        problems.append(f"leaks recorded: {store.open_leaks(PAIR)}")
    if store.list_failures(PAIR):
        problems.append(f"failing objects: {store.list_failures(PAIR)}")
