"""`reamaze-sync demo --tracker github`: the same story against the GitHub simulator.

GitHub has no private comments, so the story shows the other side of the visibility
rules: the Re:amaze internal note never reaches GitHub (the pair asks for a content-free
placeholder instead), and the developer's public GitHub comment arrives in Re:amaze as an
internal note, since the policy does not let tracker comments reach the customer.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from connectors.github.sim import GitHubSimulator
from connectors.reamaze.sim import ReamazeSimulator
from syncer.app import run_all_once
from syncer.config import parse_config
from syncer.sandbox import BRAND, LOGIN, MARKER_KEY, REAMAZE_TOKEN
from syncer.status import render_status

Echo = Callable[[str], None]
REPO = "acme/app"
API = "https://api.github.com"


def run_github_demo(echo: Echo, report: Callable[[Echo, list], None],  # type: ignore[type-arg]
                    keep_state: Path | None = None) -> int:
    gh = GitHubSimulator()
    bot, dev = gh.add_user("sync-bot", kind="Bot"), gh.add_user("dana-dev")
    repo = gh.add_repo(REPO)
    gh.grant(repo, bot.login, "write")
    gh.grant(repo, dev.login, "write")
    rz = ReamazeSimulator(brand=BRAND, login_email=LOGIN, token=REAMAZE_TOKEN,
                          login_name="Sync Bot")
    rz.add_staff("jane@acme.example", "Jane (support)")
    slug = rz.add_conversation(
        "Export button does nothing", "Hi! Clicking Export in the reports page does nothing.",
        "carol@customer.example", customer_name="Carol Customer", tags=["bug"])
    rz.add_staff_message(slug, "Customer is on the Enterprise plan; renewal next week.",
                         email="jane@acme.example", visibility=1)
    fast = {"requests_per_minute": 100_000, "burst": 1000}
    with tempfile.TemporaryDirectory() as tmp:
        db = keep_state or Path(tmp) / "demo.db"
        config = parse_config({
            "state": {"url": f"sqlite:///{db}"},
            "reamaze": {"brand": BRAND, "login_email": LOGIN, "http": fast,
                        "base_url": f"https://{BRAND}.reamaze.io/api/v1"},
            "trackers": {"github": {"kind": "github", "repo": REPO, "http": fast}},
            "pairs": [{"name": "bugs", "tracker": "github", "interval_seconds": 60,
                       "tag_to_label": {"bug": "bug"},
                       "visibility": {"internal_to_public_tracker": "placeholder"},
                       "status": {"close_reply_template":
                                  "Good news: \"{subject}\" is fixed. Thanks for reporting!"}}],
        })
        from syncer.app import build_engine

        engine = build_engine(config, environ={
            "REAMAZE_API_TOKEN": REAMAZE_TOKEN, "GITHUB_TOKEN": bot.token,
            "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY}, transports={
            "reamaze": httpx.MockTransport(rz.handle), "github": gh.transport()})
        developer = httpx.Client(base_url=API, transport=gh.transport(),
                                 headers={"Authorization": f"Bearer {dev.token}"})
        try:
            echo("== 1. Re:amaze has a bug-tagged conversation with an internal note")
            report(echo, run_all_once(engine))
            link = engine.store.get_link("bugs", slug)
            number = link.issue_id if link else None
            echo(f"   -> GitHub issue {REPO}#{number} created, labelled 'bug'")
            _show(rz, gh, slug, number, echo)

            echo("\n== 2. A developer comments on GitHub, then closes the issue")
            gh.clock.advance(2)
            developer.post(f"/repos/{REPO}/issues/{number}/comments",
                           json={"body": "Fixed in v2.4: the export job had no permission."})
            developer.patch(f"/repos/{REPO}/issues/{number}",
                            json={"state": "closed", "state_reason": "completed"})
            report(echo, run_all_once(engine))
            _show(rz, gh, slug, number, echo)

            echo("\n== 3. Another pass: nothing changed, nothing is written (no echo)")
            report(echo, run_all_once(engine))
            echo("\n== status")
            echo(render_status(config, engine.store, datetime.now(UTC)))
        finally:
            developer.close()
            engine.close()
    echo("\nThe internal note never reached GitHub (only a placeholder says one exists); the "
         "customer only got the close reply the pair's policy asks for.")
    return 0


def _show(rz: ReamazeSimulator, gh: GitHubSimulator, slug: str, number: str | None,
          echo: Echo) -> None:
    conv = rz.conversations[slug]
    echo(f"  Re:amaze conversation {slug} (status {conv.status})")
    for m in sorted(conv.messages, key=lambda m: m.created_at):
        vis = {0: "public  ", 1: "INTERNAL", 2: "collision"}[m.visibility]
        echo(f"    [{vis}] {m.author.name or m.author.email}: {' '.join(m.body.split())[:90]}")
    if number is None:
        return
    repo = gh.state.repos[REPO]
    issue = gh.state.issue(repo, int(number))
    echo(f"  GitHub issue #{number}: {issue.title!r} state={issue.state} labels={issue.labels}")
    for c in sorted(gh.state.comments.values(), key=lambda c: c.id):
        if c.number == issue.number:
            text = " ".join(c.body.split("<!--")[0].split())
            echo(f"    [public  ] {c.author}: {text[:90]}")
