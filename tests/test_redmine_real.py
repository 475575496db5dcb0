"""Facts only a real Redmine can confirm: how our markers render in its HTML pages."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from syncer.models import NewComment, NewTicket, Visibility

if TYPE_CHECKING:
    from servers.redmine_server import RedmineServer

pytest_plugins = ["redmine_fixtures"]


@pytest.mark.redmine
@pytest.mark.parametrize("formatting", ["textile", "common_mark"])
def test_markers_are_invisible_in_rendered_pages(redmine_server: RedmineServer,
                                                 formatting: str) -> None:
    """The trailing <!-- reamaze-sync:… --> is dropped from the rendered description and
    notes under both text formats, while the human text shows."""
    from redmine_fixtures import RedmineBackend

    backend = RedmineBackend("real", redmine_server.url, redmine_server.admin_key,
                             server=redmine_server)
    redmine_server.set_setting("text_formatting", formatting)
    try:
        project = backend.new_project()
        conn = backend.connector(project, text_formatting=formatting)
        created = conn.create_ticket(NewTicket(subject="Render", description="Visible *body*",
                                               marker="rs-renderdesc"))
        comment = conn.create_comment(created.id, NewComment(
            body="Visible note", visibility=Visibility.INTERNAL, marker="rs-rendernote"))
        with backend.raw() as raw:
            page = raw.get(f"/issues/{created.id}").text
        description = re.search(r"<strong>Description</strong></p>\s*<div class=\"wiki\">"
                                r"(.*?)</div>", page, re.S)
        notes = re.search(rf'<div id="journal-{comment.id}-notes" class="wiki">(.*?)</div>',
                          page, re.S)
        assert description is not None and notes is not None
        assert "Visible" in description.group(1) and "Visible note" in notes.group(1)
        for rendered in (description.group(1), notes.group(1)):
            assert "reamaze-sync" not in rendered and "rs-render" not in rendered
    finally:
        redmine_server.set_setting("text_formatting", "textile")
        backend.close()


@pytest.mark.redmine
def test_a_file_goes_with_its_note_byte_for_byte(redmine_server: RedmineServer) -> None:
    """A real Redmine takes the upload with the note in one journal, keeps a non-ASCII
    file name, and gives back the same bytes; a file over its size limit is named in the
    note with Redmine's reason."""
    import os

    from redmine_fixtures import RedmineBackend

    from syncer.models import FileData

    backend = RedmineBackend("real", redmine_server.url, redmine_server.admin_key,
                             server=redmine_server)
    try:
        project = backend.new_project()
        conn = backend.connector(project)
        created = conn.create_ticket(NewTicket(subject="Files", description="d",
                                               marker="rs-filesdesc"))
        data = os.urandom(100_000) + b"\x00\xff"
        name = "Ünïcødé résumé (v2).bin"
        comment = conn.create_comment(created.id, NewComment(
            body="Here is the log.", visibility=Visibility.PUBLIC, marker="rs-filesnote",
            files=(FileData(name=name, content_type="application/octet-stream", data=data),)))
        [attachment] = conn.list_attachments(created.id)
        assert attachment.name == name and conn.download_attachment(attachment) == data
        with backend.raw() as raw:
            journals = raw.get(f"/issues/{created.id}.json",
                               params={"include": "journals"}).json()["issue"]["journals"]
        [journal] = [j for j in journals if str(j["id"]) == comment.id]
        assert [d["property"] for d in journal["details"]] == ["attachment"]
        too_big = b"z" * (5 * 1024 * 1024 + 1)  # Redmine's default attachment_max_size
        refused = conn.create_comment(created.id, NewComment(
            body="The dump.", visibility=Visibility.PUBLIC, marker="rs-filesbig",
            files=(FileData(name="dump.bin", data=too_big),)))
        assert "dump.bin: not attached, Redmine refused it" in refused.body
        assert len(conn.list_attachments(created.id)) == 1
    finally:
        backend.close()
