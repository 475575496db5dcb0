"""The GitHub simulator and our requests, checked against GitHub's official OpenAPI
description (tests/specs/github-rest-issues.openapi.json, MIT, see tests/specs/README.md).

Every exchange of a scenario that exercises each call the connector makes is checked:
the operation exists for that method and path; each query parameter we send is declared
for it and matches its schema; each JSON body we send matches the operation's request
schema; each answer's status is documented for the operation and its JSON body matches the
documented schema; and listings carry the ``link`` header where the spec declares it.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from github_support import REPO, Exchange, GitHubWorld
from openapi_schema_validator import OAS30Validator

from syncer.models import NewComment, NewTicket, TicketState, TicketUpdate, Visibility

SPEC = Path(__file__).parent / "specs" / "github-rest-issues.openapi.json"


@functools.cache
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SPEC.read_text())
    _null_in_nullable_enums(loaded)
    return loaded


def _null_in_nullable_enums(node: Any) -> None:
    """OpenAPI 3.0 means ``nullable: true`` to admit null even beside an ``enum`` (GitHub
    sends ``state_reason: null``); the JSON Schema validator checks the enum first, so
    null is added to such enums."""
    if isinstance(node, dict):
        if node.get("nullable") and isinstance(node.get("enum"), list) \
                and None not in node["enum"]:
            node["enum"].append(None)
        for value in node.values():
            _null_in_nullable_enums(value)
    elif isinstance(node, list):
        for value in node:
            _null_in_nullable_enums(value)


def resolve(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec()
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def validate(instance: Any, schema: dict[str, Any]) -> None:
    OAS30Validator({**schema, "components": spec()["components"]}).validate(instance)


def operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    path = re.sub(r"^/repositories/\d+", f"/repos/{REPO}", path)  # link headers' form
    for template, item in spec()["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    raise AssertionError(f"{method} {path} is not in GitHub's OpenAPI description")


def check_exchange(exchange: Exchange) -> str:
    request, response = exchange.request, exchange.response
    template, op = operation(request.method, request.url.path)
    declared = {p["name"]: p for p in map(resolve, op.get("parameters", ()))
                if p["in"] == "query"}
    for name, value in request.url.params.multi_items():
        assert name in declared, f"{request.method} {template}: undeclared query {name!r}"
        schema = declared[name].get("schema", {})
        typed: Any = int(value) if schema.get("type") == "integer" else value
        validate(typed, schema)
    if request.content:
        body_schema = resolve(op["requestBody"])["content"]["application/json"]["schema"]
        validate(json.loads(request.content), body_schema)
    status = str(response.status_code)
    documented = op["responses"].get(status)
    if documented is None and response.status_code in (401, 403, 404):
        # Any operation can answer these (the description lists them only for some); the
        # body is then GitHub's generic error.
        validate(response.json(), {"$ref": "#/components/schemas/basic-error"})
        return f"{request.method} {template} {status}"
    assert documented is not None, f"{request.method} {template}: {status} is not documented"
    documented = resolve(documented)
    content = documented.get("content", {}).get("application/json")
    if content is not None and response.content:
        validate(response.json(), resolve(content["schema"]))
    if "Link" in documented.get("headers", {}) and response.headers.get("link"):
        assert 'rel="next"' in response.headers["link"] or 'rel="prev"' in \
            response.headers["link"]
    return f"{request.method} {template} {status}"


@pytest.fixture(scope="module")
def scenario() -> GitHubWorld:
    """Every call the connector makes, successes and documented failures."""
    gh = GitHubWorld()
    conn = gh.connector()
    conn.check()
    created = conn.create_ticket(NewTicket(subject="Crash", description="It crashes.",
                                           marker="rs-spec-1", tags=("bug",),
                                           assignee_id="dev-dana"))
    for n in range(3):
        conn.create_comment(created.id, NewComment(body=f"note {n}", visibility=Visibility.PUBLIC,
                                                   marker=f"rs-spec-c{n}"))
    for n in range(130):
        gh.sim.add_comment(gh.repo, "dev-dana", int(created.id), f"dev {n}")
    conn.list_comments(created.id)
    conn.update_ticket(created.id, TicketUpdate(state=TicketState.CLOSED, tags=("bug", "ui"),
                                                assignee_id=""))
    conn.update_ticket(created.id, TicketUpdate(state=TicketState.OPEN))
    for n in range(150):
        gh.sim.add_issue(gh.repo, "sync-bot", f"filler {n}")
    list(conn.iter_changes(None))
    conn.find_ticket_by_marker("rs-spec-1")  # not among the newest: search
    conn.find_comment_by_marker(created.id, "rs-spec-c1")
    comment = conn.list_comments(created.id)[0]
    conn.update_comment(created.id, comment.id, "edited")
    conn.delete_comment(created.id, comment.id)
    conn.setting_problems()
    # Documented failures: 404 issue, 422 validation, 404 comment.
    for call in (lambda: conn.get_ticket("999"),
                 lambda: conn.create_comment(created.id, NewComment(
                     body="x" * 70_000, visibility=Visibility.PUBLIC, marker="rs-long")),
                 lambda: conn.delete_comment(created.id, "424242")):
        with pytest.raises(Exception):  # noqa: B017 - only the exchange matters here
            call()
    return gh


def test_every_exchange_matches_githubs_openapi_description(scenario: GitHubWorld) -> None:
    checked = {check_exchange(e) for e in scenario.exchanges}
    for expected in ("GET /user 200", "GET /repos/{owner}/{repo} 200",
                     "POST /repos/{owner}/{repo}/issues 201",
                     "PATCH /repos/{owner}/{repo}/issues/{issue_number} 200",
                     "GET /repos/{owner}/{repo}/issues 200",
                     "GET /repos/{owner}/{repo}/issues/{issue_number} 200",
                     "GET /repos/{owner}/{repo}/issues/{issue_number} 404",
                     "GET /repos/{owner}/{repo}/issues/{issue_number}/comments 200",
                     "POST /repos/{owner}/{repo}/issues/{issue_number}/comments 201",
                     "POST /repos/{owner}/{repo}/issues/{issue_number}/comments 422",
                     "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id} 200",
                     "DELETE /repos/{owner}/{repo}/issues/comments/{comment_id} 204",
                     "GET /search/issues 200"):
        assert expected in checked, (expected, sorted(checked))


def test_a_wrong_answer_shape_is_caught() -> None:
    """The check itself bites: an issue without ``number`` fails validation."""
    schema = resolve(operation("GET", f"/repos/{REPO}/issues/1")[1]["responses"]["200"])
    body = {"id": 1, "title": "x"}
    with pytest.raises(Exception, match="required"):
        validate(body, resolve(schema["content"]["application/json"]["schema"]))
