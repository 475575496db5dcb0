"""Two Re:amaze brands in one config, each with its own simulator, synced by one engine:
every pair reads and writes only its own brand, and the request budget is one per login."""

from __future__ import annotations

import base64
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from connectors.http import ApiClient
from connectors.reamaze.sim.simulator import ReamazeSimulator
from connectors.redmine.sim.simulator import RedmineSimulator
from syncer.app import Engine, build_engine, run_all_once
from syncer.budgets import StorePacer
from syncer.check import run_check
from syncer.config import AppConfig, parse_config
from syncer.daemon import sweep_slice
from syncer.metrics import DaemonMetrics
from syncer.runner import PairRunner
from syncer.secrets import MASK, scrub
from syncer.startcheck import check_at_start
from syncer.status import render_status, status_document

FAST = {"requests_per_minute": 100_000, "burst": 1000}
REDMINE_URL = "http://redmine.sandbox"
MARKER_KEY = "brands-test-marker-key-0001"
STAFF = "jane@example.com"


@dataclass
class TwoBrands:
    acme: ReamazeSimulator
    globex: ReamazeSimulator
    redmine: RedmineSimulator
    config: AppConfig
    environ: dict[str, str]
    state_file: Path

    def transports(self) -> dict[str, httpx.BaseTransport]:
        redmine = httpx.MockTransport(self.redmine.handle)
        return {"reamaze:acme": httpx.MockTransport(self.acme.handle),
                "reamaze:globex": httpx.MockTransport(self.globex.handle),
                "acme-rm": redmine, "globex-rm": redmine}

    def engine(self) -> Engine:
        return build_engine(self.config, environ=self.environ, transports=self.transports())

    def issues(self, project: str) -> list[str]:
        found = next(p for p in self.redmine.state.projects.values()
                     if p.identifier == project)
        return sorted(i.subject for i in self.redmine.state.issues.values()
                      if i.project_id == found.id)

    def note(self, issue_id: str, text: str) -> None:
        """A developer's public note on the issue, through Redmine's API."""
        self.redmine.clock.advance(2)  # humans do not act in the sync's second
        response = self.dev.put(f"/issues/{issue_id}.json", json={"issue": {"notes": text}})
        assert response.status_code == 204, response.text

    @property
    def dev(self) -> httpx.Client:
        user = self.redmine.state.user_by_login("dev")
        assert user is not None
        return httpx.Client(base_url=REDMINE_URL, transport=httpx.MockTransport(
            self.redmine.handle), headers={"X-Redmine-API-Key": user.api_key})


def two_brands(tmp_path: Path, *, acme_login: str = "bot@acme.example",
               globex_login: str = "bot@globex.example", acme_token: str = "acme-token-0001",
               globex_token: str = "globex-token-0002") -> TwoBrands:
    acme = ReamazeSimulator(brand="acme", login_email=acme_login, token=acme_token)
    globex = ReamazeSimulator(brand="globex", login_email=globex_login, token=globex_token)
    for sim in (acme, globex):
        sim.add_staff(STAFF, "Jane Support")
    redmine = RedmineSimulator()
    dev = redmine.add_user("dev", firstname="Dana", lastname="Dev")
    for project in ("acme-support", "globex-support"):
        redmine.add_member(redmine.add_project(project), dev, ("Manager",))
    tracker: dict[str, Any] = {"kind": "redmine", "base_url": REDMINE_URL,
                               "overlap_seconds": 2, "http": FAST}
    state_file = tmp_path / "state.db"
    data = {
        "state": {"url": f"sqlite:///{state_file}"},
        "brands": {
            "acme": {"brand": "acme", "login_email": acme_login,
                     "api_token_env": "ACME_TOKEN", "http": FAST},
            "globex": {"brand": "globex", "login_email": globex_login,
                       "api_token_env": "GLOBEX_TOKEN", "http": FAST}},
        "trackers": {"acme-rm": {**tracker, "project": "acme-support"},
                     "globex-rm": {**tracker, "project": "globex-support"}},
        "pairs": [{"name": "acme-bugs", "brand": "acme", "tracker": "acme-rm"},
                  {"name": "globex-bugs", "brand": "globex", "tracker": "globex-rm"}],
    }
    environ = {"ACME_TOKEN": acme_token, "GLOBEX_TOKEN": globex_token,
               "REDMINE_API_KEY": redmine.admin_key, "REAMAZE_SYNC_MARKER_KEY": MARKER_KEY}
    return TwoBrands(acme, globex, redmine, parse_config(data, need_secrets=True,
                                                         environ=environ), environ, state_file)


def sync(engine: Engine) -> None:
    results = run_all_once(engine)
    assert sorted(r.pair for r in results) == ["acme-bugs", "globex-bugs"]
    assert all(r.ok and not r.failed for r in results), [(r.error, r.failed) for r in results]


def test_each_pair_syncs_its_own_brand_and_nothing_crosses(tmp_path: Path) -> None:
    world = two_brands(tmp_path)
    crash = world.acme.add_conversation("Acme app crashes", "It crashes on save.",
                                        "carol@customer.example", tags=["bug"])
    world.acme.add_staff_message(crash, "INTERNAL-ACME reproduced", email=STAFF, visibility=1)
    world.acme.add_conversation("Acme invoice", "Send the invoice.", "dave@customer.example")
    export = world.globex.add_conversation("Globex export fails", "Export is empty.",
                                           "erin@customer.example", tags=["bug"])
    engine = world.engine()
    sync(engine)

    assert world.issues("acme-support") == ["Acme app crashes"]
    assert world.issues("globex-support") == ["Globex export fails"]
    acme_link, globex_link = (engine.store.get_link("acme-bugs", crash),
                              engine.store.get_link("globex-bugs", export))
    assert acme_link is not None and globex_link is not None
    assert engine.store.get_link("globex-bugs", crash) is None
    assert engine.store.get_link("acme-bugs", export) is None
    # Each brand was asked only with its own login, and never refused it.
    for sim in (world.acme, world.globex):
        assert sim.requests and all(r.status is not None and r.status < 400
                                    for r in sim.requests), sim.requests

    assert acme_link.issue_id is not None and globex_link.issue_id is not None
    world.note(acme_link.issue_id, "ACME-FIX shipped in 2.1")
    world.note(globex_link.issue_id, "GLOBEX-FIX shipped in 7.0")
    sync(engine)
    acme_texts = [m.body for c in world.acme.conversations.values() for m in c.messages]
    globex_texts = [m.body for c in world.globex.conversations.values() for m in c.messages]
    assert any("ACME-FIX" in t for t in acme_texts)
    assert any("GLOBEX-FIX" in t for t in globex_texts)
    assert not any("GLOBEX" in t for t in acme_texts)
    assert not any("ACME" in t for t in globex_texts)
    assert set(world.globex.conversations) == {export}
    assert set(world.acme.conversations) == {crash, "acme-invoice"}


def test_each_brand_reads_its_own_change_feed(tmp_path: Path) -> None:
    """Pages one brand's pair read never answer the other brand's pair."""
    world = two_brands(tmp_path)
    engine = world.engine()
    sync(engine)
    feeds = {b: getattr(c, "shared_pages", None) for b, c in engine.helpdesks.items()}
    assert feeds["acme"] is not None and feeds["acme"] is not feeds["globex"]
    assert [p.shared for p in feeds.values() if p is not None] == [0, 0]
    for sim in (world.acme, world.globex):
        assert any(r.path.startswith("/api/v1/conversations") for r in sim.requests)


def test_every_brands_token_is_masked(tmp_path: Path) -> None:
    """Both brands' tokens, and the Basic headers they travel in, are scrubbed from error
    text once the engine is built (values unique to this test: the registry is global)."""
    tokens = {"acme": "acme-scrub-token-7f3a", "globex": "globex-scrub-token-9c1e"}
    world = two_brands(tmp_path, acme_token=tokens["acme"], globex_token=tokens["globex"])
    headers = {b: base64.b64encode(f"bot@{b}.example:{t}".encode()).decode().rstrip("=")
               for b, t in tokens.items()}
    echoed = " ".join([*tokens.values(), *headers.values()])
    assert scrub(echoed) == echoed
    world.engine()
    assert scrub(echoed) == " ".join([MASK] * 4)


def _budget_rows(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return sorted(k for (k,) in db.execute("SELECT key FROM request_budgets")
                      if k.startswith("reamaze "))


def _pacer_key(engine: Engine, brand: str) -> str:
    api = getattr(engine.helpdesks[brand], "api", None)
    assert isinstance(api, ApiClient) and api.rate_limiter is not None
    pacer = api.rate_limiter.shared
    assert isinstance(pacer, StorePacer)
    return pacer.key


def test_two_brands_on_one_login_share_one_budget(tmp_path: Path) -> None:
    world = two_brands(tmp_path, acme_login="bot@example.com", globex_login="bot@example.com")
    engine = world.engine()
    sync(engine)
    assert _pacer_key(engine, "acme") == _pacer_key(engine, "globex")
    assert _budget_rows(world.state_file) == ["reamaze bot@example.com"]


def test_two_logins_get_a_budget_each(tmp_path: Path) -> None:
    world = two_brands(tmp_path)
    engine = world.engine()
    sync(engine)
    assert _pacer_key(engine, "acme") != _pacer_key(engine, "globex")
    assert _budget_rows(world.state_file) == ["reamaze bot@acme.example",
                                              "reamaze bot@globex.example"]


def test_check_names_each_brand_and_skips_an_unused_one(tmp_path: Path) -> None:
    world = two_brands(tmp_path)
    report = run_check(world.config, environ=world.environ, transports=world.transports())
    assert report.exit_code == 0, report
    assert "[brands.acme] ok: brand acme as bot@acme.example (Sync Bot)" in report.lines
    assert "[brands.globex] ok: brand globex as bot@globex.example (Sync Bot)" in report.lines
    acme, globex = world.config.pairs
    quiet = world.config.model_copy(update={
        "pairs": [acme, globex.model_copy(update={"enabled": False})]})
    asked = len(world.globex.requests)
    report = run_check(quiet, environ=world.environ, transports=world.transports())
    assert "[brands.globex] skipped: no enabled pair uses it" in report.lines
    assert len(world.globex.requests) == asked


def test_start_check_tries_each_brand_once(tmp_path: Path) -> None:
    world = two_brands(tmp_path)
    engine = world.engine()
    found = check_at_start(engine, engine.pairs())
    assert not found.broken and not found.unreachable
    assert sorted(found.calls) == ["acme-rm", "globex-rm", "reamaze:acme", "reamaze:globex"]
    assert [r.path for r in world.globex.requests] == ["/api/v1/staff"]


def test_status_shows_each_pairs_brand(tmp_path: Path) -> None:
    world = two_brands(tmp_path)
    engine = world.engine()
    sync(engine)
    now = datetime.now(UTC)
    doc = status_document(world.config, engine.store, now)
    assert [(p["name"], p["brand"]) for p in doc["pairs"]] == [("acme-bugs", "acme"),
                                                               ("globex-bugs", "globex")]
    assert [b["service"] for b in doc["api_budgets"]] == [
        "reamaze:acme", "reamaze:globex", "acme-rm", "globex-rm"]
    text = render_status(world.config, engine.store, now)
    assert "[acme-bugs] brand=acme tracker=acme-rm " in text
    assert "[globex-bugs] brand=globex tracker=globex-rm " in text


def test_the_sweep_splits_each_brands_budget_among_its_own_pairs(tmp_path: Path) -> None:
    """A daemon with one pair per brand gives each pair its brand's whole sweep share."""
    world = two_brands(tmp_path)
    engine = world.engine()
    acme, globex = engine.pairs()
    made = sweep_slice(engine, globex, [acme, globex])
    assert made is not None
    share = world.config.sync.sweep_share * FAST["requests_per_minute"] / 60
    assert made.budget.per_second == {"reamaze:globex": share, "globex-rm": share}
    assert made.budget.apis["reamaze:globex"] is engine.helpdesks["globex"].api


def test_metrics_count_each_brands_requests_apart(tmp_path: Path) -> None:
    world = two_brands(tmp_path)
    world.globex.add_conversation("Globex export fails", "Export is empty.",
                                  "erin@customer.example", tags=["bug"])
    engine = world.engine()
    sync(engine)
    metrics = DaemonMetrics(engine.store, engine.pairs(), {**engine.connections()},
                            lambda _pair: False)
    sample = metrics.registry.get_sample_value
    for brand, sim in (("acme", world.acme), ("globex", world.globex)):
        counted = sample("reamaze_sync_api_requests_total", {"service": f"reamaze:{brand}"})
        assert counted == len(sim.requests), brand
    assert len(world.globex.requests) > len(world.acme.requests)


def test_each_brand_learns_how_it_counts_messages_on_its_own(tmp_path: Path) -> None:
    """What a brand's runs learn of its message counts is shared by its pairs only."""
    world = two_brands(tmp_path)
    engine = world.engine()
    acme, globex = (engine.runner(p) for p in engine.pairs())
    assert isinstance(acme, PairRunner) and isinstance(globex, PairRunner)
    assert acme.counting is not globex.counting
    again = engine.runner(engine.pairs()[0])
    assert isinstance(again, PairRunner) and again.counting is acme.counting
