"""`reamaze-sync demo --tracker gitlab`: the same story against the GitLab simulator.

GitLab keeps internal notes, so the story shows them crossing both ways and staying
internal: the Re:amaze internal note becomes an internal GitLab note (read back to prove
it), and the developer's internal GitLab note arrives in Re:amaze as an internal note.
The developer's public note arrives as an internal note too, since the policy does not
let tracker comments reach the customer.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from connectors.gitlab.sim import GitLabSimulator
from connectors.gitlab.sim.state import DEVELOPER, REPORTER
from connectors.reamaze.sim import ReamazeSimulator
from syncer.app import build_engine, run_all_once
from syncer.config import parse_config
from syncer.sandbox import BRAND, LOGIN, MARKER_KEY, REAMAZE_TOKEN
from syncer.status import render_status

Echo = Callable[[str], None]
PROJECT = "acme/app"
API = "https://gitlab.com/api/v4"


def run_gitlab_demo(echo: Echo, report: Callable[[Echo, list], None],  # type: ignore[type-arg]
                    keep_state: Path | None = None) -> int:
    gl = GitLabSimulator()
    bot, dev = gl.add_user("sync-bot", bot=True), gl.add_user("dana-dev")
    project = gl.add_project(PROJECT)
    gl.grant(project, bot.username, REPORTER)
    gl.grant(project, dev.username, DEVELOPER)
    rz = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN,
                          login_name="Sync Bot")
    rz.add_staff("jane@acme.example", "Jane (support)")
    slug = rz.add_conversation(
        "Export button does nothing", "Hi! Clicking Export in the reports page does nothing.",
        "carol@customer.example", customer_name="Carol Customer", tags=["bug"])
    rz.add_staff_message(slug, "Customer is on the Enterprise plan; renewal next week.",
                         email="jane@acme.example", visibility=1)
    fast = {"requests_per_minute": 100_000, "writes_per_minute": 100_000, "burst": 1000}
    with tempfile.TemporaryDirectory() as tmp:
        db = keep_state or Path(tmp) / "demo.db"
        config = parse_config({
            "state": {"url": f"sqlite:///{db}"},
            "reamaze": {"brand": BRAND, "login_email": LOGIN, "http": fast,
                        "base_url": f"https://{BRAND}.reamaze.io/api/v1"},
            "trackers": {"gitlab": {"kind": "gitlab", "project": PROJECT, "http": fast}},
            "pairs": [{"name": "bugs", "tracker": "gitlab", "interval_seconds": 60,
                       "tag_to_label": {"bug": "bug"},
                       "status": {"close_reply_template":
                                  "Good news: \"{subject}\" is fixed. Thanks for reporting!"}}],
        })
        engine = build_engine(config, environ={
            "REAMAZE_API_TOKEN": REAMAZE_TOKEN, "GITLAB_TOKEN": bot.token,
            "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY}, transports={
            "reamaze": httpx.MockTransport(rz.handle), "gitlab": gl.transport()})
        developer = httpx.Client(base_url=API, transport=gl.transport(),
                                 headers={"PRIVATE-TOKEN": dev.token})
        try:
            echo("== 1. Re:amaze has a bug-tagged conversation with an internal note")
            report(echo, run_all_once(engine))
            link = engine.store.get_link("bugs", slug)
            iid = link.issue_id if link else None
            echo(f"   -> GitLab issue {PROJECT}#{iid} created, labelled 'bug'")
            _show(rz, gl, slug, iid, echo)

            echo("\n== 2. A developer writes a note and an internal note, then closes the issue")
            gl.clock.advance(2)
            notes = f"/projects/{PROJECT.replace('/', '%2F')}/issues/{iid}/notes"
            developer.post(notes, json={"body": "Fixed in v2.4: the export job had no "
                                                "permission."})
            developer.post(notes, json={"body": "Root cause: the billing role was missing.",
                                        "internal": True})
            developer.put(f"/projects/{PROJECT.replace('/', '%2F')}/issues/{iid}",
                          json={"state_event": "close"})
            report(echo, run_all_once(engine))
            _show(rz, gl, slug, iid, echo)

            echo("\n== 3. Another pass: nothing changed, nothing is written (no echo)")
            report(echo, run_all_once(engine))
            echo("\n== status")
            echo(render_status(config, engine.store, datetime.now(UTC)))
        finally:
            developer.close()
            engine.close()
    echo("\nThe internal note went to GitLab as an internal note, the developer's internal "
         "note came back internal; the customer only got the close reply the pair's policy "
         "asks for.")
    return 0


def _show(rz: ReamazeSimulator, gl: GitLabSimulator, slug: str, iid: str | None,
          echo: Echo) -> None:
    conv = rz.conversations[slug]
    echo(f"  Re:amaze conversation {slug} (status {conv.status})")
    for m in sorted(conv.messages, key=lambda m: m.created_at):
        vis = {0: "public  ", 1: "INTERNAL", 2: "collision"}[m.visibility]
        echo(f"    [{vis}] {m.author.name or m.author.email}: {' '.join(m.body.split())[:90]}")
    if iid is None:
        return
    project = next(p for p in gl.state.projects.values() if p.path == PROJECT)
    issue = gl.state.issue(project, int(iid))
    echo(f"  GitLab issue #{iid}: {issue.title!r} state={issue.state} labels={issue.labels}")
    for n in sorted(gl.state.notes.values(), key=lambda n: n.id):
        if n.project_id == project.id and n.iid == issue.iid and not n.system:
            text = " ".join(n.body.split("<!--")[0].split())
            echo(f"    [{'INTERNAL' if n.internal else 'public  '}] {n.author}: {text[:90]}")
