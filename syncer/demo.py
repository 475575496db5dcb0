"""`reamaze-sync demo`: the real engine against the built-in simulators, as a short story."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

from syncer.app import run_all_once
from syncer.sandbox import Sandbox, make_sandbox
from syncer.status import render_status

Echo = Callable[[str], None]


def _tracker_client(sb: Sandbox) -> httpx.Client:
    """A developer using Redmine's REST API, as a human would through the web UI."""
    return httpx.Client(base_url="http://redmine.sandbox",
                        transport=httpx.MockTransport(sb.redmine.handle),
                        headers={"X-Redmine-API-Key": sb.redmine.admin_key})


def _show(sb: Sandbox, slug: str, issue_id: str | None, echo: Echo) -> None:
    echo("  Re:amaze conversation " + slug)
    conv = sb.reamaze.conversations[slug]
    echo(f"    status: {conv.status} ({_status_name(conv.status)})")
    for m in sorted(conv.messages, key=lambda m: m.created_at):
        vis = {0: "public  ", 1: "INTERNAL", 2: "collision"}[m.visibility]
        emailed = "" if m.visibility or not getattr(m, "notified", True) else "  (emailed)"
        first = " ".join(m.body.split())
        echo(f"    [{vis}] {m.author.name or m.author.email}: {first[:90]}{emailed}")
    if issue_id is None:
        return
    with _tracker_client(sb) as http:
        issue = http.get(f"/issues/{issue_id}.json", params={"include": "journals"}).json()
    iss = issue["issue"]
    echo(f"  Redmine issue #{issue_id}: {iss['subject']!r} status={iss['status']['name']}")
    for j in iss.get("journals", []):
        if not j.get("notes"):
            continue
        vis = "PRIVATE " if j["private_notes"] else "public  "
        first = " ".join(j["notes"].split())
        echo(f"    [{vis}] {j['user']['name']}: {first[:90]}")


def _status_name(code: int) -> str:
    return {0: "Open", 1: "Responded", 2: "Done", 5: "On Hold"}.get(code, str(code))


def run_demo(echo: Echo, keep_state: Path | None = None) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        db = keep_state or Path(tmp) / "demo.db"
        sb = make_sandbox(
            f"sqlite:///{db}",
            status={"close_reply_template":
                    "Good news: the problem behind \"{subject}\" is fixed. Thanks for reporting!"},
        )
        rz = sb.reamaze
        rz.add_staff("jane@acme.example", "Jane (support)")
        slug = rz.add_conversation(
            "App crashes on login", "Hi! Since yesterday the app crashes whenever I log in.",
            "carol@customer.example", customer_name="Carol Customer", tags=["bug"])
        rz.add_staff_message(slug, "Reproduced on iOS 17. Customer is on the Enterprise plan.",
                             email="jane@acme.example", visibility=1)
        other = rz.add_conversation("Invoice copy", "Could you send me last month's invoice?",
                                    "dave@customer.example", customer_name="Dave")
        echo("== 1. Re:amaze has a bug-tagged conversation (with an internal note) and a "
             "billing question")
        engine = sb.engine()
        try:
            _report(echo, run_all_once(engine))
            link = engine.store.get_link("bugs", slug)
            issue_id = link.issue_id if link else None
            echo(f"   -> issue #{issue_id} created; the billing question "
                 f"({other}) matches no rule and stays out of Redmine")
            _show(sb, slug, issue_id, echo)

            echo("\n== 2. Engineering works in Redmine: a private note, a public note, "
                 "then closes the issue")
            with _tracker_client(sb) as http:
                http.put(f"/issues/{issue_id}.json", json={"issue": {
                    "notes": "Root cause: race in the token refresh. Fixed in build 2.3.1.",
                    "private_notes": True}}).raise_for_status()
                http.put(f"/issues/{issue_id}.json", json={"issue": {
                    "notes": "Fix released in 2.3.1."}}).raise_for_status()
                http.put(f"/issues/{issue_id}.json",
                         json={"issue": {"status_id": 5}}).raise_for_status()
            _report(echo, run_all_once(engine))
            _show(sb, slug, issue_id, echo)

            echo("\n== 3. Another pass: nothing changed, nothing is written (no echo)")
            _report(echo, run_all_once(engine))
            echo("\n== status")
            from datetime import UTC, datetime

            echo(render_status(sb.config, engine.store, datetime.now(UTC)))
        finally:
            engine.close()
    echo("\nPrivate/internal notes stayed internal on both sides; the customer only got the "
         "close reply the pair's policy asks for.")
    return 0


def _report(echo: Echo, results: list) -> None:  # type: ignore[type-arg]
    for r in results:
        writes = {k: v for k, v in r.counts.items()
                  if k.startswith(("issues_created", "comments_to", "helpdesk_updated",
                                   "tracker_updated"))}
        state = "ok" if r.ok else f"ERROR {r.error}"
        echo(f"   pass [{r.pair}] {state}; writes: {writes or 'none'}")
