"""A throwaway PostgreSQL server on a free loopback port, for tests.

It uses the server binaries of Debian's ``postgresql`` package (``initdb`` and ``pg_ctl``
under ``/usr/lib/postgresql/<version>/bin``; ``REAMAZE_SYNC_PG_BINDIR`` overrides). The
cluster lives in a temporary directory, listens on 127.0.0.1 only, trusts local
connections (nothing else can reach it) and runs with fsync off: it is thrown away at the
end of the session. PostgreSQL refuses to run as root, so as root the binaries run as
the ``postgres`` system user that the package creates, with the directory chowned to it.

When the server is not installed the tests that need it are skipped, unless
``REAMAZE_SYNC_REQUIRE_REAL_SERVERS=1`` (CI), where they fail instead.

Setup on Debian/Ubuntu: ``apt-get install -y postgresql`` (pulls ``postgresql-<version>``).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

REQUIRE_ENV = "REAMAZE_SYNC_REQUIRE_REAL_SERVERS"
BINDIR_ENV = "REAMAZE_SYNC_PG_BINDIR"
SUPERUSER = "postgres"
_names = itertools.count(1)


def require_or_skip(reason: str) -> None:
    """Skip with ``reason``, or fail when the environment demands real servers."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1 makes this a failure)", pytrace=False)
    pytest.skip(f"{reason} (set {REQUIRE_ENV}=1 to fail instead)")


def find_bindir() -> Path | None:
    override = os.environ.get(BINDIR_ENV)
    candidates = [Path(override)] if override else sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path and not override:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def missing_reason() -> str | None:
    """Why a server cannot be started here, or None if it can."""
    if find_bindir() is None:
        return ("PostgreSQL server binaries not found (apt-get install -y postgresql, "
                f"or set {BINDIR_ENV})")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return f"running as root but there is no {SUPERUSER!r} user to run PostgreSQL as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One cluster; ``new_database()`` hands each test an empty database of its own."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="reamaze-sync-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._shared: str | None = None
        self._as_root = os.geteuid() == 0
        if self._as_root:
            user = pwd.getpwnam(SUPERUSER)
            os.chown(self.root, user.pw_uid, user.pw_gid)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120,
                              check=False, cwd=self.root)

    def start(self) -> PostgresServer:
        done = self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                         "-E", "UTF8", "--no-locale", "--no-sync")
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        last_error = ""
        for _ in range(3):  # the free port may be taken between our probe and the bind
            self.port = _free_port()
            options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                       "-c max_connections=60")
            done = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                             "-t", "60", "-o", options, "start")
            if done.returncode == 0:
                return self
            last_error = self.log_tail()
        self.stop()
        raise RuntimeError(f"PostgreSQL did not start: {last_error}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.url(driver="postgresql"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def new_schema(self, prefix: str = "s") -> str:
        """Create an empty schema in a shared database and return a URL whose connections
        use it as their search path: as isolated as a database for unqualified names,
        but milliseconds to make instead of a third of a second."""
        import psycopg

        if self._shared is None:
            self._shared = self.new_database("shared")
        name = f"{prefix}_{os.getpid()}_{next(_names)}"
        with psycopg.connect(self._shared.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return f"{self._shared}?options=-csearch_path%3D{name}"


_SERVER = pytest.StashKey[PostgresServer]()


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> PostgresServer:
    """The session's server, started on first use.

    Kept in the pytest config stash rather than relying on the session scope alone: test
    modules import this fixture, and pytest makes each import a separate definition, so
    the scope alone would start one server per module.
    """
    stash = request.config.stash
    if _SERVER not in stash:
        reason = missing_reason()
        if reason is not None:
            require_or_skip(reason)
        bindir = find_bindir()
        assert bindir is not None
        server = PostgresServer(bindir).start()
        request.config.add_cleanup(server.stop)
        stash[_SERVER] = server
    return stash[_SERVER]


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A URL to a fresh, empty schema on the session's server."""
    return postgres_server.new_schema()
