"""Recorded exchanges with the real api.github.com (tests/specs/github-recordings, from
@octokit/fixtures, MIT) replayed against the GitHub simulator: the same requests must get
the same status codes, bodies with the same fields (and the same values where they do not
depend on ids, times or hosts), and the same ``link`` and rate-limit headers.

The recordings start by creating a temporary repository in an organisation and end by
deleting it; the simulator is set up with that repository instead, so those two calls are
not replayed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connectors.github.sim import GitHubSimulator

RECORDINGS = Path(__file__).parent / "specs" / "github-recordings"
SCENARIOS = sorted(p.name for p in RECORDINGS.iterdir() if p.is_dir())
# Values that differ between any two runs of GitHub itself.
VOLATILE = {"id", "node_id", "created_at", "updated_at", "closed_at", "pushed_at", "url",
            "html_url", "repository_url", "labels_url", "comments_url", "events_url",
            "timeline_url", "avatar_url", "gravatar_id", "score", "user", "owner", "name",
            "full_name", "reactions", "author_association", "documentation_url"}
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
                "x-ratelimit-used", "x-ratelimit-resource")


def load(scenario: str) -> list[dict[str, Any]]:
    exchanges: list[dict[str, Any]] = json.loads(
        (RECORDINGS / scenario / "raw-fixture.json").read_text())
    return exchanges


def headers_of(exchange: dict[str, Any]) -> dict[str, str]:
    raw = exchange["rawHeaders"]
    return {raw[i].lower(): raw[i + 1] for i in range(0, len(raw), 2)}


def compare(recorded: Any, simulated: Any, where: str, problems: list[str]) -> None:
    if isinstance(recorded, dict):
        if not isinstance(simulated, dict):
            problems.append(f"{where}: expected an object, got {type(simulated).__name__}")
            return
        for key, value in recorded.items():
            if key not in simulated:
                problems.append(f"{where}.{key}: missing")
            elif key not in VOLATILE:
                compare(value, simulated[key], f"{where}.{key}", problems)
    elif isinstance(recorded, list):
        if not isinstance(simulated, list) or len(simulated) != len(recorded):
            problems.append(f"{where}: {len(recorded)} items recorded, got "
                            f"{len(simulated) if isinstance(simulated, list) else simulated!r}")
            return
        for n, (a, b) in enumerate(zip(recorded, simulated, strict=True)):
            compare(a, b, f"{where}[{n}]", problems)
    elif recorded != simulated:
        problems.append(f"{where}: {recorded!r} recorded, {simulated!r} simulated")


def link_pages(header: str | None) -> dict[str, str]:
    """rel -> page number of a ``link`` header (hosts and repository ids differ)."""
    out = {}
    for part in (header or "").split(","):
        url, _, rel = part.partition(";")
        if url.strip():
            query = parse_qs(urlsplit(url.strip().strip("<>")).query)
            out[rel.split("=")[1].strip('"')] = query.get("page", ["?"])[0]
    return out


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_simulator_answers_as_github_did(scenario: str) -> None:
    exchanges = load(scenario)
    create_repo, *calls, _delete = exchanges
    sim = GitHubSimulator()
    org = create_repo["path"].split("/")[2]
    user = sim.add_user("octokit-fixture-user", token="0000000000000000000000000000000000000001")
    repo = sim.add_repo(f"{org}/{create_repo['body']['name']}", private=False)
    sim.grant(repo, user.login, "admin")
    client = httpx.Client(base_url="https://api.github.com", transport=sim.transport(),
                          headers={"Authorization": f"token {user.token}"})
    problems: list[str] = []
    for n, call in enumerate(calls):
        where = f"{scenario}#{n + 1} {call['method'].upper()} {call['path']}"
        path = call["path"].replace(f"/repositories/{create_repo['response']['id']}/",
                                    f"/repositories/{repo.id}/")
        answer = client.request(call["method"].upper(), path,
                                content=json.dumps(call["body"]).encode()
                                if call.get("body") is not None else None)
        if answer.status_code != call["status"]:
            problems.append(f"{where}: status {answer.status_code}, GitHub said "
                            f"{call['status']}")
            continue
        recorded_headers = headers_of(call)
        if call["response"] not in ("", None):
            compare(call["response"], answer.json(), where, problems)
        if link_pages(recorded_headers.get("link")) != link_pages(answer.headers.get("link")):
            problems.append(f"{where}: link {answer.headers.get('link')!r}, GitHub said "
                            f"{recorded_headers.get('link')!r}")
        for header in RATE_HEADERS:
            if (header in recorded_headers) != (header in answer.headers):
                problems.append(f"{where}: header {header} differs in presence")
    assert problems == [], "\n".join(problems)
