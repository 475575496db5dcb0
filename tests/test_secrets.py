"""Credentials are masked in every form the engine sends them in, wherever error text goes:
the error objects, the log lines and the state database."""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest
import structlog
from leaks import basic, dump_sqlite, found, fragments
from pydantic import SecretStr
from reamaze_support import make_config
from redmine_fixtures import redmine_config

from connectors.reamaze.connector import ReamazeConnector
from connectors.redmine.connector import RedmineConnector
from state import NewIntent, StateStore
from syncer.errors import BODY_LIMIT, RejectedError, SyncError
from syncer.logs import configure_logging
from syncer.plan import Side

LOGIN = "bot@acme.example"


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def never_called(request: httpx.Request) -> httpx.Response:
    raise AssertionError("no request expected")


def reamaze_token() -> str:
    """A fresh token (secrets are registered for the whole process) whose Basic form has
    "+", "/" and "=": the characters JSON, URL and form encodings rewrite."""
    while True:
        token = f"rz-{secrets.token_hex(6)}-" + "".join(secrets.choice("abcdefgh0123~?")
                                                       for _ in range(10))
        cred = basic(LOGIN, token)
        if "+" in cred and "/" in cred and cred.endswith("="):
            return token


def connect_reamaze(token: str) -> ReamazeConnector:
    return ReamazeConnector.from_config(make_config(login_email=LOGIN), SecretStr(token),
                                        transport=httpx.MockTransport(never_called))


def connect_redmine(key: str) -> RedmineConnector:
    return RedmineConnector.from_config(redmine_config("http://redmine.test", "support"),
                                        SecretStr(key),
                                        transport=httpx.MockTransport(never_called))


def encodings(value: str) -> list[str]:
    """The forms a credential takes when a server echoes a request back."""
    return [value, quote(value, safe=""), quote_plus(value), quote(value, safe="").lower(),
            json.dumps(value)[1:-1].replace("/", "\\/"), repr(value)]


def test_basic_credentials_are_masked_in_every_encoding() -> None:
    """Once a Re:amaze connector is built, its token and the base64 Basic form of
    login:token (padded or not, raw, percent-encoded, JSON-escaped) are masked in an
    error's message, body and text."""
    token = reamaze_token()
    connect_reamaze(token)
    cred = basic(LOGIN, token)
    forms = encodings(token) + encodings(cred) + encodings(cred.rstrip("="))
    echoed = " | ".join(forms)
    err = SyncError(f"echo: {echoed}", connector="reamaze", status=400, body=echoed[:400])
    frags = fragments(token, cred)
    for text in (str(err), err.message, err.body, repr(err)):
        assert not found(text, frags), text
    assert "***" in err.body


def test_trimming_a_body_never_leaves_part_of_a_key() -> None:
    """A key straddling the body's length limit is masked whole, not cut in half with its
    first characters left showing."""
    key = secrets.token_hex(20)
    connect_redmine(key)
    body = "x" * (BODY_LIMIT - 20) + key + "y" * 50
    err = RejectedError("request rejected", connector="redmine", status=422, body=body)
    assert not found(str(err), fragments(key)), str(err)


def test_logs_mask_every_encoding_of_a_basic_credential() -> None:
    """A log line carrying the Basic credential bare (no "Authorization" before it),
    percent-encoded or JSON-escaped shows none of it."""
    token = reamaze_token()
    connect_reamaze(token)
    cred = basic(LOGIN, token)
    stream = io.StringIO()
    configure_logging("debug", "json", stream)
    structlog.get_logger("t").warning("server_said", forms=encodings(cred),
                                      text=" ".join(encodings(token)))
    assert not found(stream.getvalue(), fragments(token, cred)), stream.getvalue()


def test_the_state_store_never_keeps_a_key_in_error_text(tmp_path: Path) -> None:
    """Errors of a run, of a failing object and of a failed write are stored with the key
    masked, in whatever encoding it came."""
    key = secrets.token_hex(20)
    connect_redmine(key)
    said = f'key={quote(key)} {{"X-Redmine-API-Key": "{key}"}}'
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        run = store.start_run("bugs", "poll")
        store.finish_run(run, {}, f"pass failed: {said}")
        store.record_failure("bugs", Side.HELPDESK, "conv-1", f"object failed: {said}")
        store.begin_intents("bugs", [NewIntent(key="m-1", kind="add_comment",
                                               conversation_id="conv-1", target=Side.TRACKER)])
        store.fail_intent("bugs", "m-1", f"write failed: {said}")
        failure = store.list_failures("bugs")[0]
        assert failure.error.startswith("object failed: key=***")
    finally:
        store.close()
    dump = dump_sqlite(tmp_path / "state.db")
    assert "pass failed" in dump and "write failed" in dump
    assert not found(dump, fragments(key)), dump
