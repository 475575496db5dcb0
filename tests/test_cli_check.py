"""`reamaze-sync check`: settings the servers do not know are configuration errors, and an
unreachable host is reported in seconds with its URL and cause.

Networks are real but local: the simulators and small servers on loopback, a free port
nobody listens on, and a `.invalid` host name (reserved: it never resolves). The tests
count attempts (the check's own report, and the connections a server accepted), never
wall time.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from test_cli import LOGIN, STAFF, Served

EXE = Path(sys.executable).with_name("reamaze-sync")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    saved = structlog.get_config()
    s = Served(tmp_path)
    yield s
    s.close()
    structlog.configure(**saved)


def with_redmine(served: Served, *, base_url: str | None = None, tracker: str = "",
                 pair: str = "", reamaze_url: str | None = None) -> None:
    """Rewrite the config with other Redmine settings (and optionally other base URLs)."""
    served.write_config()
    text = served.path.read_text()
    if base_url is not None:
        text = text.replace(f'base_url = "{served.rm_server.url}"', f'base_url = "{base_url}"')
    if reamaze_url is not None:
        text = text.replace(f'base_url = "{served.rz_server.url}/api/v1"',
                            f'base_url = "{reamaze_url}"')
    text = text.replace('project = "support"\n', f'project = "support"\n{tracker}')
    served.path.write_text(text + pair)


# -- settings the server does not have --------------------------------------------------------

def test_unknown_ids_are_listed_all_at_once(served: Served) -> None:
    """Every configured id the Redmine server lacks is one `[section] key: message` line
    with what it does know; unknown staff on either side too; exit 2, nothing written."""
    with_redmine(served,
                 tracker="tracker_id = 99\npriority_id = 42\nclosed_status_id = 2\n"
                         "reopened_status_id = 6\n",
                 pair=f'staff_to_user = {{ "{STAFF}" = "77", "ghost@acme.example" = "1" }}\n')
    result = served.cli("check")
    assert result.exit_code == 2, result.output
    assert "[reamaze] ok: " in result.stdout and "[trackers.redmine] ok: " in result.stdout
    assert result.stderr.splitlines() == [
        "configuration error:",
        f"[pairs[0]] staff_to_user: 'ghost@acme.example' is not a Re:amaze staff email "
        f"(known: {STAFF}, {LOGIN})",
        "[trackers.redmine] tracker_id: 99 does not exist (known: 1 Bug, 2 Feature, 3 Support)",
        "[trackers.redmine] priority_id: 42 does not exist (known: 1 Low, 2 Normal, 3 High, "
        "4 Urgent, 5 Immediate)",
        "[trackers.redmine] closed_status_id: 2 In Progress is not a closed status (closed: "
        "5 Closed, 6 Rejected)",
        "[trackers.redmine] reopened_status_id: 6 Rejected is a closed status; reopening needs "
        "an open one (open: 1 New, 2 In Progress, 3 Resolved, 4 Feedback)",
        f"[pairs[0]] staff_to_user: user 77 (for '{STAFF}') does not exist or is not a member "
        "of project 'support' (known: 1 Redmine Admin)",
    ]
    assert served.writes() == []


def test_known_ids_pass(served: Served) -> None:
    """Ids the server has, a closed closing status and an open reopening one: exit 0."""
    with_redmine(served,
                 tracker="tracker_id = 3\npriority_id = 4\nclosed_status_id = 6\n"
                         "reopened_status_id = 2\n",
                 pair=f'staff_to_user = {{ "{STAFF}" = "1" }}\n')
    result = served.cli("check")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


def test_missing_project_names_the_visible_ones(served: Served) -> None:
    """A project the API user cannot find is a configuration error listing the projects
    it can see."""
    served.redmine.add_project("roadmap")
    with_redmine(served)
    served.path.write_text(served.path.read_text().replace('project = "support"',
                                                           'project = "suport"'))
    result = served.cli("check")
    assert result.exit_code == 2, result.output
    assert ("[trackers.redmine] project: 'suport' does not exist or is not visible to admin "
            "(visible: support, roadmap)") in result.stderr.splitlines()


def test_a_tracker_no_enabled_pair_uses_is_skipped(served: Served) -> None:
    """A tracker used only by a disabled pair is neither contacted nor needs its key."""
    with_redmine(served, pair='enabled = false\n\n[[pairs]]\nname = "other"\n'
                              'tracker = "spare"\n\n[trackers.spare]\nkind = "redmine"\n'
                              f'base_url = "{served.rm_server.url}"\nproject = "support"\n')
    result = served.cli("check")
    assert result.exit_code == 0, result.output
    assert "[trackers.redmine] skipped: no enabled pair uses it" in result.stdout
    assert "[trackers.spare] ok: " in result.stdout


# -- failing fast ----------------------------------------------------------------------------

def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_refused_connection_fails_after_two_attempts(served: Served) -> None:
    """A port nobody listens on: the URL, "connection refused", two attempts (the daemon's
    max_attempts of 8 is not used), exit 1; the other connection is still checked."""
    port = free_port()
    with_redmine(served, base_url=f"http://127.0.0.1:{port}")
    result = served.cli("check")
    assert result.exit_code == 1, result.output
    assert (f"[trackers.redmine] FAIL cannot reach http://127.0.0.1:{port}/projects/support.json:"
            " connection refused (2 attempts)") in result.stdout.splitlines()
    assert "[reamaze] ok: " in result.stdout


class HandshakeCounter:
    """Plain text where TLS is expected: answers every connection with an HTTP error page,
    counting the connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.accepted += 1
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        # close() alone would leave accept() blocked in the thread; shutdown() wakes it.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5)


def test_tls_failure_is_named(served: Served) -> None:
    """https:// to a server speaking plain HTTP: a TLS failure, two connections, exit 1."""
    server = HandshakeCounter()
    try:
        with_redmine(served, base_url=f"https://127.0.0.1:{server.port}")
        result = served.cli("check")
    finally:
        server.close()
    assert result.exit_code == 1, result.output
    [line] = [x for x in result.stdout.splitlines() if x.startswith("[trackers.redmine]")]
    assert line.startswith(f"[trackers.redmine] FAIL cannot reach https://127.0.0.1:"
                           f"{server.port}/projects/support.json: TLS handshake failed (")
    assert line.endswith(" (2 attempts)")
    assert server.accepted == 2


def test_dns_failure_is_named(served: Served) -> None:
    """A host name that cannot resolve: "DNS lookup ... failed", two attempts, exit 1.

    A child process, so the resolver options below apply from its start: one try of at
    most a second per lookup, should a resolver ever sit on the reserved name.
    """
    with_redmine(served, base_url="https://redmine.invalid")
    env = {**os.environ, **served.env, "RES_OPTIONS": "timeout:1 attempts:1"}
    result = subprocess.run([str(EXE), "--config", str(served.path), "--log-level", "error",
                             "check"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = [x for x in result.stdout.splitlines() if x.startswith("[trackers.redmine]")]
    assert line.startswith("[trackers.redmine] FAIL cannot reach "
                           "https://redmine.invalid/projects/support.json: DNS lookup of "
                           "redmine.invalid failed (")
    assert line.endswith(" (2 attempts)")


def test_reamaze_404_hints_at_api_v1(served: Served) -> None:
    """A base_url without /api/v1 gets 404 from Re:amaze: the check says where the API
    lives, after a single request (a 404 is not retried)."""
    with_redmine(served, reamaze_url=served.rz_server.url)
    result = served.cli("check")
    assert result.exit_code == 1, result.output
    url = served.rz_server.url
    assert (f"[reamaze] FAIL {url}/staff?page=1 answered 404 Not Found: the Re:amaze API is "
            "under "
            f"/api/v1, so base_url should probably be \"{url}/api/v1\" (1 attempt)"
            ) in result.stdout.splitlines()
    assert len(served.reamaze.requests) == 1


def test_a_reverse_channel_re_amaze_lacks_is_named(served: Served) -> None:
    """Reverse creation into a channel Re:amaze does not have would fail every issue:
    a configuration error naming the key and the channels there are."""
    with_redmine(served, pair='\n[pairs.reverse]\nenabled = true\ntracker_ids = [1]\n'
                              'fallback_contact = "support@acme.example"\ncategory = "bugz"\n')
    result = served.cli("check")
    assert result.exit_code == 2, result.output
    assert "[pairs[0].reverse] category: 'bugz' is not a Re:amaze channel (known: " \
        in result.stderr
    assert served.writes() == []
