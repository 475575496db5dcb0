"""Files on tracker notes: Re:amaze attaches a file only by fetching its URL, and a
Redmine file needs a login, so a copy names each file on a line of its own (name, size,
the tracker's link for staff, and that it needs a login) instead of passing a URL Re:amaze
cannot fetch. A customer reply names the file only."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
from e2e_support import Engineer, issue_for, messages, run_pass, sandbox

from syncer.models import Attachment
from syncer.plan import AddComment, Side
from syncer.reconcile import reconcile
from tests.reconcile_builders import (
    IID,
    agreed,
    comment,
    context,
    conversation,
    issue,
    link,
    of_type,
    policy,
    view,
)

LOG = Attachment(name="crash.log", content_type="text/plain", size=12_600,
                 url="https://redmine.example/attachments/download/5/crash.log")
SHOT = Attachment(name="screen.png", content_type="image/png", size=800,
                  url="https://redmine.example/attachments/download/6/screen.png")


def _copy(ctx: object, *files: Attachment, internal: bool = True) -> AddComment:
    conv, iss = conversation(), issue()
    note = comment("n1", ticket=IID, body="Logs attached.", internal=internal,
                   attachments=files)
    plan = reconcile(ctx, view(conv), view(iss, (note,)),  # type: ignore[arg-type]
                     link(snapshot=agreed(conv, iss)))
    [copy] = [a for a in of_type(plan, AddComment) if a.target is Side.HELPDESK]
    return copy


def test_each_file_gets_a_line_with_name_size_link_and_login() -> None:
    """A file Re:amaze cannot fetch is not passed as a URL; the copy names it."""
    copy = _copy(context(), LOG, SHOT)
    assert copy.new.attachments == ()
    lines = copy.new.body.splitlines()
    assert ("Attached on Redmine (needs a Redmine login): crash.log (12.3 KB) "
            "https://redmine.example/attachments/download/5/crash.log") in lines
    assert ("Attached on Redmine (needs a Redmine login): screen.png (800 bytes) "
            "https://redmine.example/attachments/download/6/screen.png") in lines


def test_a_customer_reply_names_the_file_without_the_trackers_address() -> None:
    ctx = context(policy(visibility={"customer_replies_from_tracker": True}))
    copy = _copy(ctx, LOG, internal=False)
    assert copy.new.notify_customer and copy.new.attachments == ()
    assert "Attached on Redmine, not sent: crash.log (12.3 KB)" in copy.new.body.splitlines()
    assert "redmine.example" not in copy.new.body


def test_a_tracker_whose_files_download_freely_passes_them_by_url() -> None:
    ctx = context()
    ctx = replace(ctx, tracker_caps=replace(ctx.tracker_caps, fetchable_attachment_urls=True))
    copy = _copy(ctx, LOG)
    assert copy.new.attachments == (LOG,) and "Attached on" not in copy.new.body


def test_redmine_file_reaches_reamaze_as_a_line_not_a_url(tmp_path: Path) -> None:
    """End to end: a file an engineer attaches on Redmine is named in the Re:amaze copy
    with its Redmine link; no URL Re:amaze would fail to fetch is sent."""
    sb = sandbox(tmp_path)
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.",
                                       "carol@customer.example", tags=["bug"])
    dev = Engineer(sb)
    engine = sb.engine()
    try:
        run_pass(engine)
        issue_id = issue_for(engine, slug)
        data = b"line 1\nline 2\n" * 100
        up = dev.http.post("/uploads.json", params={"filename": "crash.log"}, content=data,
                           headers={"Content-Type": "application/octet-stream"})
        assert up.status_code == 201, up.text
        token = up.json()["upload"]["token"]
        dev.sim.clock.advance(2)
        put = dev.http.put(f"/issues/{issue_id}.json", json={"issue": {
            "notes": "Logs attached.", "uploads": [{"token": token, "filename": "crash.log"}]}})
        assert put.status_code == 204, put.text
        run_pass(engine)
        [copy] = [m for m in messages(sb, slug) if "Logs attached." in m.body]
        assert copy.attachments == []
        posted = [r.json["message"] for r in sb.reamaze.requests
                  if r.method == "POST" and r.json and "Logs attached." in
                  str(r.json.get("message", {}).get("body"))]
        assert [("attachment" in p, "attachments" in p) for p in posted] == [(False, False)]
        [line] = [x for x in copy.body.splitlines() if "crash.log" in x]
        assert line.startswith("Attached on Redmine (needs a Redmine login): crash.log (1.4 KB) ")
        url = line.rsplit(" ", 1)[1]
        assert httpx.URL(url).path.startswith("/attachments/download/")
        assert dev.http.get(httpx.URL(url).path).content == data  # staff can open it
    finally:
        engine.close()
