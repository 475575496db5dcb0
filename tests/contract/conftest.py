"""The trackers the contract suite runs against, one ``tracker`` parameter each: Redmine
on its simulator and on a real server, GitHub and GitLab on their simulators.

A new tracker joins the suite with its harness (``tracker_harness.py``) and one entry in
``HARNESSES``: a name, the pytest marks (``redmine`` for a real Redmine: skipped where it
is not installed, a failure with REAMAZE_SYNC_REQUIRE_REAL_SERVERS=1), and how to build it.
Modules using ``tracker`` load the fixtures it needs with
``pytest_plugins = ["redmine_fixtures"]`` (a conftest below the root may not).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

# Imported here before a test module loads it as a plugin: rewrite its asserts all the same.
pytest.register_assert_rewrite("redmine_fixtures", "tracker_harness")

from redmine_fixtures import SIM_URL, RedmineBackend  # noqa: E402
from tracker_harness import (  # noqa: E402
    GitHubHarness,
    GitLabHarness,
    RedmineHarness,
    TrackerHarness,
)

from connectors.redmine.sim import RedmineSimulator  # noqa: E402
from connectors.redmine.sim.state import SimClock  # noqa: E402


def _redmine_simulator(_request: pytest.FixtureRequest) -> TrackerHarness:
    sim = RedmineSimulator(clock=SimClock(), sleep=lambda _s: None)
    return RedmineHarness(RedmineBackend("simulator", SIM_URL, sim.admin_key, sim=sim))


def _redmine_real(request: pytest.FixtureRequest) -> TrackerHarness:
    server = request.getfixturevalue("redmine_server")
    return RedmineHarness(RedmineBackend("real", server.url, server.admin_key, server=server))


HARNESSES: list[tuple[str, list[pytest.MarkDecorator],
                      Callable[[pytest.FixtureRequest], TrackerHarness]]] = [
    ("redmine-sim", [], _redmine_simulator),
    ("redmine-real", [pytest.mark.redmine], _redmine_real),
    ("github-sim", [], lambda _request: GitHubHarness()),
    ("gitlab-sim", [], lambda _request: GitLabHarness()),
]


@pytest.fixture(params=[pytest.param(build, id=name, marks=marks)
                        for name, marks, build in HARNESSES])
def tracker(request: pytest.FixtureRequest) -> Iterator[TrackerHarness]:
    harness = request.param(request)
    try:
        yield harness
    finally:
        harness.close()
