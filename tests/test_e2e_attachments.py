"""Files on Re:amaze messages reach the tracker: uploaded byte for byte with a public copy
where the tracker takes uploads, listed with a link always, never uploaded from an
internal note (a tracker's files have no private flag), and named with the reason when
the tracker refuses one or it cannot be fetched."""

from __future__ import annotations

import os
from pathlib import Path

from e2e_support import STAFF, issue_for, journals, run_pass, sandbox

from connectors.redmine.sim import data as redmine_limits

INTERNAL = 1
NAME = "Ünïcødé résumé (v2).pdf"


def _redmine_files(sb: object, issue: str) -> dict[str, bytes]:
    state = sb.redmine.state  # type: ignore[attr-defined]
    return {a.filename: a.data for a in state.attachments.values()
            if a.container_id == int(issue)}


def test_a_customers_file_arrives_byte_for_byte_with_its_copy(tmp_path: Path) -> None:
    sb = sandbox(tmp_path)
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.", "carol@customer.example",
                                       tags=["bug"])
    engine = sb.engine()
    run_pass(engine)
    issue = issue_for(engine, slug)
    data = os.urandom(200_000) + b"\x00\xff end"
    sb.reamaze.add_customer_message(slug, "Here is the crash log.", attachments=[
        sb.reamaze.host_file(NAME, data, "application/pdf")])
    run_pass(engine)
    assert _redmine_files(sb, issue) == {NAME: data}
    [note] = [j for j in journals(sb, issue) if "crash log" in j.text]
    assert "Attachments:" in note.text and "195 KB" in note.text
    assert "https://acme.reamaze.com/attachments/" in note.text
    # One journal: the note and its file together.
    journal = sb.redmine.state.journals[note.id]
    assert [d["new_value"] for d in journal.details if d["property"] == "attachment"] == [NAME]
    run_pass(engine)
    assert len(_redmine_files(sb, issue)) == 1  # a quiet pass uploads nothing again
    engine.close()


def test_an_internal_notes_file_stays_a_link(tmp_path: Path) -> None:
    sb = sandbox(tmp_path)
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.", "carol@customer.example",
                                       tags=["bug"])
    engine = sb.engine()
    run_pass(engine)
    issue = issue_for(engine, slug)
    sb.reamaze.add_staff_message(slug, "INTERNAL-1 their config, do not share", email=STAFF,
                                 visibility=INTERNAL)
    msg = sb.reamaze.conversations[slug].messages[-1]
    msg.attachments = [sb.reamaze.host_file("config.yml", b"secret: 1\n", "text/yaml")]
    run_pass(engine)
    [note] = [j for j in journals(sb, issue) if "INTERNAL-1" in j.text]
    assert note.private and "config.yml" in note.text
    assert _redmine_files(sb, issue) == {}
    engine.close()


def test_a_file_the_tracker_refuses_is_named_with_the_reason(tmp_path: Path) -> None:
    sb = sandbox(tmp_path)
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.", "carol@customer.example",
                                       tags=["bug"])
    engine = sb.engine()
    run_pass(engine)
    issue = issue_for(engine, slug)
    big = b"x" * (redmine_limits.MAX_ATTACHMENT_BYTES + 1)
    sb.reamaze.add_customer_message(slug, "The full dump.", attachments=[
        sb.reamaze.host_file("dump.bin", big), sb.reamaze.host_file("small.txt", b"ok")])
    run_pass(engine)
    [note] = [j for j in journals(sb, issue) if "full dump" in j.text]
    assert "dump.bin: not attached, Redmine refused it" in note.text
    assert "maximum allowed file size" in note.text
    assert _redmine_files(sb, issue) == {"small.txt": b"ok"}
    engine.close()


def test_files_past_our_limit_or_not_fetchable_stay_links(tmp_path: Path) -> None:
    sb = sandbox(tmp_path, sync={"attachment_max_mb": 0.01})
    slug = sb.reamaze.add_conversation("Crash on save", "It crashes.", "carol@customer.example",
                                       tags=["bug"])
    engine = sb.engine()
    run_pass(engine)
    issue = issue_for(engine, slug)
    gone = sb.reamaze.host_file("gone.txt", b"soon deleted")
    sb.reamaze.files.clear()
    sb.reamaze.add_customer_message(slug, "Two files.", attachments=[
        sb.reamaze.host_file("large.bin", b"y" * 20_000), gone])
    run_pass(engine)
    [note] = [j for j in journals(sb, issue) if "Two files" in j.text]
    assert "large.bin" in note.text and "gone.txt" in note.text
    assert _redmine_files(sb, issue) == {}
    engine.close()
