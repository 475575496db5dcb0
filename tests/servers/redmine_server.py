"""Start and drive a real Redmine 5.0 (Debian package) for tests, on a free loopback port.

``start_redmine(dir)`` runs tests/servers/redmine-start.sh (our own copy of the reference
script): an isolated instance in ``dir`` (SQLite, login required, REST on), answering on
127.0.0.1 after ~4 s once its template database is cached. ``RedmineAdmin`` is a small
admin client used by tests to create projects, users and memberships; it talks to the
simulator just as well (pass its transport).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

SCRIPT = Path(__file__).with_name("redmine-start.sh")
REDMINE_ROOT = Path("/usr/share/redmine")
REQUIRE_ENV = "REAMAZE_SYNC_REQUIRE_REAL_SERVERS"


def redmine_missing_reason() -> str | None:
    """Why a real Redmine cannot be started here, or None when it can."""
    if not REDMINE_ROOT.is_dir():
        return (f"Redmine is not installed ({REDMINE_ROOT} missing); run "
                f"`bash {SCRIPT} install` (Debian 12, root) to enable these tests")
    for tool in ("bundle", "sqlite3", "curl"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found; run `bash {SCRIPT} install`"
    return None


def real_servers_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") == "1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedmineServer:
    url: str
    admin_key: str
    directory: Path
    started_in: float

    def stop(self) -> None:
        subprocess.run(["bash", str(SCRIPT), "stop", str(self.directory)], check=False,
                       capture_output=True, timeout=60)

    def set_setting(self, name: str, value: str) -> None:
        """Change an instance setting in place (e.g. ``text_formatting``).

        Redmine reloads its cached settings when the newest ``settings.updated_on``
        advances, so the running server picks the value up on its next request.
        """
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        with sqlite3.connect(self.directory / "db" / "redmine.sqlite3", timeout=10) as db:
            cur = db.execute("UPDATE settings SET value = ?, updated_on = ? WHERE name = ?",
                             (value, stamp, name))
            if cur.rowcount == 0:
                db.execute("INSERT INTO settings (name, value, updated_on) VALUES (?, ?, ?)",
                           (name, value, stamp))


def start_redmine(directory: Path, port: int | None = None, *, timeout: float = 300,
                  mail_dir: Path | None = None) -> RedmineServer:
    """``mail_dir``: deliver mail as files there (see ``Mailbox``); Redmine still sends
    only what ``Setting.notified_events`` asks for, which the template leaves empty."""
    port = port or free_port()
    started = time.monotonic()
    env = dict(os.environ)
    if mail_dir is not None:
        env["REDMINE_MAIL_DIR"] = str(mail_dir)
    result = subprocess.run(["bash", str(SCRIPT), "start", str(directory), str(port)],
                            capture_output=True, text=True, timeout=timeout, check=False,
                            env=env)
    if result.returncode != 0:
        raise RuntimeError(f"redmine-start.sh failed ({result.returncode}):\n"
                           f"{result.stderr[-3000:]}")
    key = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if len(key) != 40:
        raise RuntimeError(f"redmine-start.sh printed no API key:\n{result.stderr[-3000:]}")
    return RedmineServer(f"http://127.0.0.1:{port}", key, directory,
                         time.monotonic() - started)


_JOB = re.compile(r"(Enqueued|Performed|Error performing) ActionMailer::MailDeliveryJob "
                  r"\(Job ID: ([0-9a-f-]+)\)")
_MESSAGE_ID = re.compile(r"^Message-ID: <redmine\.(issue|journal)-(\d+)\.", re.M)


class Mailbox:
    """The mail a server started with ``mail_dir`` sent, as files of ActionMailer's
    ``:file`` delivery (one file per recipient address, messages appended).

    Redmine hands each mail to an in-process job queue (``deliver_later``) after the
    request has answered, so a test first waits for ``settled()``: every delivery job that
    the log shows enqueued has been performed (or failed).
    """

    def __init__(self, server: RedmineServer, mail_dir: Path) -> None:
        self.log = server.directory / "log" / "production.log"
        self.mail_dir = mail_dir

    def settled(self) -> bool:
        enqueued: set[str] = set()
        done: set[str] = set()
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        for what, job in _JOB.findall(text):
            (enqueued if what == "Enqueued" else done).add(job)
        return enqueued <= done

    def sent_to(self, address: str) -> list[tuple[str, int]]:
        """What each mail to ``address`` is about: ("issue", id) or ("journal", id)."""
        path = self.mail_dir / address
        if not path.exists():
            return []
        return [(kind, int(n)) for kind, n in
                _MESSAGE_ID.findall(path.read_text(encoding="utf-8", errors="replace"))]


def wait_for(predicate: Callable[[], bool], *, tries: int = 200, pause: float = 0.05) -> bool:
    """Poll a bounded number of times; the caller asserts on the answer."""
    for _ in range(tries):
        if predicate():
            return True
        time.sleep(pause)
    return predicate()


class RedmineAdmin:
    """Test setup through the REST API with the admin key (real server or simulator)."""

    def __init__(self, url: str, admin_key: str,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.http = httpx.Client(base_url=url, transport=transport, timeout=30,
                                 headers={"X-Redmine-API-Key": admin_key,
                                          "Accept": "application/json"})

    def close(self) -> None:
        self.http.close()

    def _ok(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise AssertionError(f"{response.request.method} {response.request.url.path} -> "
                                 f"{response.status_code} {response.text[:300]}")
        return response.json() if response.content.strip() else None

    def create_project(self, identifier: str, *, public: bool = True) -> dict[str, Any]:
        body = {"project": {"name": identifier.replace("-", " ").title(),
                            "identifier": identifier, "is_public": public,
                            "enabled_module_names": ["issue_tracking"],
                            "tracker_ids": [1, 2, 3]}}
        return dict(self._ok(self.http.post("/projects.json", json=body))["project"])

    def create_user(self, login: str) -> dict[str, Any]:
        body = {"user": {"login": login, "firstname": login.capitalize(), "lastname": "Tester",
                         "mail": f"{login}@example.net", "password": "secret-password-1"}}
        return dict(self._ok(self.http.post("/users.json", json=body))["user"])

    def add_member(self, project: str, user_id: int, role: str) -> dict[str, Any]:
        roles = {r["name"]: r["id"] for r in self._ok(self.http.get("/roles.json"))["roles"]}
        body = {"membership": {"user_id": user_id, "role_ids": [roles[role]]}}
        return dict(self._ok(self.http.post(f"/projects/{project}/memberships.json",
                                            json=body))["membership"])

    def set_member_role(self, membership_id: int, role: str) -> None:
        roles = {r["name"]: r["id"] for r in self._ok(self.http.get("/roles.json"))["roles"]}
        self._ok(self.http.put(f"/memberships/{membership_id}.json",
                               json={"membership": {"role_ids": [roles[role]]}}))

    def issue(self, issue_id: str | int, include: str = "journals,attachments") -> dict[str, Any]:
        return dict(self._ok(self.http.get(f"/issues/{issue_id}.json",
                                           params={"include": include}))["issue"])

    def put_issue(self, issue_id: str | int, **fields: Any) -> None:
        self._ok(self.http.put(f"/issues/{issue_id}.json", json={"issue": fields}))

    def create_issue(self, project: str, subject: str, **fields: Any) -> dict[str, Any]:
        body = {"issue": {"project_id": project, "subject": subject, **fields}}
        return dict(self._ok(self.http.post("/issues.json", json=body))["issue"])
