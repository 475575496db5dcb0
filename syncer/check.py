"""`reamaze-sync check`: the configuration tried against the state and every service."""

from __future__ import annotations

from state import StateMissing, StateOutdated, StateStore


def state_report(url: str) -> str:
    """One line on the state database, read without creating or migrating it: a missing
    database is normal before the first run, an older schema is upgraded by `run`."""
    try:
        store = StateStore(url, read_only=True)
    except StateMissing as exc:
        return f"[state] ok: {exc.location} does not exist yet (fine for a first run: `run` " \
               "creates it)"
    except StateOutdated as exc:
        return (f"[state] ok: {exc.location} (schema version {exc.version}; the next `run` "
                f"upgrades it to {exc.current})")
    try:
        return f"[state] ok: {store.location} (schema version {store.schema_version})"
    finally:
        store.close()
