"""The command with two Re:amaze brands in one file, both syncing into one Redmine project:
each brand served on its own loopback port, as an operator would run it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from connectors.loopback import LoopbackServer
from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.redmine.sim.simulator import RedmineSimulator
from syncer.cli import main
from syncer.sandbox import MARKER_KEY

BRANDS = ("acme", "globex")


class Served:
    def __init__(self, tmp_path: Path) -> None:
        self.sims = {b: ReamazeSimulator(brand=b, login_email=f"bot@{b}.example",
                                         token=f"{b}-cli-token-0042") for b in BRANDS}
        self.redmine = RedmineSimulator()
        self.redmine.add_project("support")
        self.servers = {b: LoopbackServer(s.handle).start() for b, s in self.sims.items()}
        self.servers["redmine"] = LoopbackServer(self.redmine.handle).start()
        self.path = tmp_path / "reamaze-sync.toml"
        self.env = {**{f"{b.upper()}_TOKEN": f"{b}-cli-token-0042" for b in BRANDS},
                    "REDMINE_API_KEY": self.redmine.admin_key,
                    "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY}
        fast = "[{}.http]\nrequests_per_minute = 100000\nburst = 1000\n"
        brands = "".join(f"""
[brands.{b}]
brand = "{b}"
login_email = "bot@{b}.example"
api_token_env = "{b.upper()}_TOKEN"
base_url = "{self.servers[b].url}/api/v1"
{fast.format(f"brands.{b}")}""" for b in BRANDS)
        pairs = "".join(f"""
[[pairs]]
name = "{b}-bugs"
brand = "{b}"
tracker = "redmine"
""" for b in BRANDS)
        self.path.write_text(f"""
[state]
url = "sqlite:///{tmp_path / 'state.db'}"
{brands}
[trackers.redmine]
kind = "redmine"
base_url = "{self.servers['redmine'].url}"
project = "support"
{fast.format("trackers.redmine")}
{pairs}""")

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(main, ["--config", str(self.path), "--log-level", "warning",
                                         *args], env=env or self.env, catch_exceptions=False)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.close()


def test_check_run_and_status_with_two_brands_in_one_project(served: Served) -> None:
    """Both brands' bug conversations become issues of the one project, each linked by its
    own pair; a second pass writes nothing (neither pair takes the other's issue, which
    its tracker feed shows, for one of its own); `status` names each pair's brand."""
    checked = served.cli("check")
    assert checked.exit_code == 0, checked.output
    for b in BRANDS:
        assert f"[brands.{b}] ok: brand {b} as bot@{b}.example" in checked.stdout
    slugs = {b: sim.add_conversation(f"{b.title()} crashes", "It crashes.",
                                     f"carol@{b}-customer.example", tags=["bug"])
             for b, sim in served.sims.items()}

    first = served.cli("run", "--once")
    assert first.exit_code == 0, first.output
    subjects = sorted(i.subject for i in served.redmine.state.issues.values())
    assert subjects == ["Acme crashes", "Globex crashes"]
    for b, sim in served.sims.items():
        assert set(sim.conversations) == {slugs[b]}
    writes = {b: len([r for r in sim.requests if r.method != "GET"])
              for b, sim in served.sims.items()}
    issues = len(served.redmine.state.issues)

    again = served.cli("run", "--once")
    assert again.exit_code == 0, again.output
    assert len(served.redmine.state.issues) == issues
    assert {b: len([r for r in sim.requests if r.method != "GET"])
            for b, sim in served.sims.items()} == writes

    status = served.cli("status")
    for b in BRANDS:
        line = rf"^\[{b}-bugs\] brand={b} tracker=redmine enabled=True links=1 "
        assert re.search(line, status.stdout, re.M), status.stdout


def test_a_missing_brand_token_stops_the_command_naming_the_brand(served: Served) -> None:
    env = {k: v for k, v in served.env.items() if k != "GLOBEX_TOKEN"}
    result = served.cli("run", "--once", env=env)
    assert result.exit_code == 2
    assert ("[brands.globex] api_token_env: environment variable GLOBEX_TOKEN is not set "
            "(used by pair 'globex-bugs')") in result.output
    assert not any(sim.requests for sim in served.sims.values())
    only_acme = served.cli("run", "--once", "--pair", "acme-bugs", env=env)
    assert only_acme.exit_code == 0, only_acme.output
