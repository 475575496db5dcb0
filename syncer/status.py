"""`reamaze-sync status`: what each pair has done, what is waiting, and what is wrong.

One document per pair is collected first (``status_document``) and printed either as
text or, with ``--json``, as is: the JSON is the same data, so the two never disagree.
Its shape is documented in the README and versioned by ``FORMAT``; fields are only ever
added within a version.

A pair has a *problem* (and `status` exits 1) when

* its latest finished run failed (``failed``);
* it is stale: enabled, and no pass succeeded for ``stale_after_seconds`` (default
  ``STALE_INTERVALS`` times ``interval_seconds``), or none ever did (``stale``). A pass a live
  process is working on is activity, not staleness, unless it is a poll running past
  the threshold itself (a backfill may run for hours);
* a public copy of internal content could not be removed (``leak``).

Failing objects are listed but are no problem of the pair: the dead letter exists so one
poison conversation does not hold the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from state import (
    FailureRecord,
    Holder,
    LeakRecord,
    RunRecord,
    StateMissing,
    StateOutdated,
    StateStore,
)
from syncer.budgets import budget_keys
from syncer.config import SINGLE_BRAND, AppConfig, PairConfig
from syncer.plan import Side
from syncer.runner import MAX_AUTO_RETRIES

FORMAT = 1
STALE_INTERVALS = 3
SHOWN_FAILURES = 10


def stale_after(pair: PairConfig) -> float:
    return pair.stale_after_seconds or STALE_INTERVALS * pair.interval_seconds


def _seconds(now: datetime, then: datetime | None) -> int | None:
    return None if then is None else int((now - then).total_seconds())


def _span(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def _age(now: datetime, then: datetime | None) -> str:
    return "never" if then is None else f"{_span((now - then).total_seconds())} ago"


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _still_held(run: RunRecord, holder: Holder | None) -> bool:
    """An unfinished run is running only while its process holds the pair: a process
    that died (killed, crashed, host lost) left the run unfinished and holds nothing."""
    if holder is None:
        return False
    return run.holder is None or run.holder == holder.label  # None: an older release's run


def run_state(run: RunRecord, holder: Holder | None) -> str:
    if run.finished:
        return "ok" if run.error is None else "failed"
    return "running" if _still_held(run, holder) else "interrupted"


def _run(run: RunRecord, holder: Holder | None, now: datetime) -> dict[str, Any]:
    return {"kind": run.kind, "state": run_state(run, holder),
            "started_at": _iso(run.started_at), "finished_at": _iso(run.finished_at),
            "age_seconds": _seconds(now, run.started_at), "holder": run.holder,
            "counts": dict(sorted(run.counts.items())), "error": run.error}


def _failure(f: FailureRecord) -> dict[str, Any]:
    return {"side": f.side.value, "object_id": f.object_id, "attempts": f.attempts,
            "skipped": f.skipped,
            # Retried at the start of every pass until skipped or past the limit.
            "auto_retry": not f.skipped and f.attempts < MAX_AUTO_RETRIES,
            "error": f.error, "first_seen": _iso(f.first_seen), "last_seen": _iso(f.last_seen)}


def _leak(leak: LeakRecord) -> dict[str, Any]:
    return {"conversation_id": leak.conversation_id, "side": leak.side.value,
            "ticket_id": leak.ticket_id, "comment_id": leak.comment_id,
            "detected_at": _iso(leak.detected_at), "detail": leak.detail}


def _problems(pair: PairConfig, now: datetime, last: RunRecord | None,
              last_ok: RunRecord | None, last_error: RunRecord | None,
              holder: Holder | None, leaks: list[LeakRecord]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    if pair.enabled and last_error is not None and (last_ok is None
                                                    or last_error.id > last_ok.id):
        out.append({"kind": "failed", "message": f"last run failed "
                    f"({_age(now, last_error.started_at)}): {last_error.error}"})
    limit = stale_after(pair)
    working = (last is not None and run_state(last, holder) == "running"
               and (last.kind == "backfill"
                    or (now - last.started_at).total_seconds() <= limit))
    if pair.enabled and not working:
        every = f"runs every {_span(pair.interval_seconds)}, stale after {_span(limit)}"
        if last_ok is None:
            out.append({"kind": "stale", "message": f"stale: no pass has succeeded yet "
                        f"({every})"})
        elif last_ok.finished_at is not None and \
                (now - last_ok.finished_at).total_seconds() > limit:
            out.append({"kind": "stale", "message": "stale: no pass has succeeded for "
                        f"{_span((now - last_ok.finished_at).total_seconds())} ({every})"})
    if leaks:
        out.append({"kind": "leak", "message": f"{len(leaks)} public copies of internal "
                    "content could not be removed; internal notes to the tracker are "
                    "paused"})
    return out


def pair_status(pair: PairConfig, store: StateStore, now: datetime) -> dict[str, Any]:
    name = pair.name
    cursors: dict[str, Any] = {}
    for side in Side:
        cur = store.get_cursor(name, side)
        cursors[side.value] = {"watermark": _iso(cur.watermark) if cur else None,
                               "age_seconds": _seconds(now, cur.watermark) if cur else None}
    holder = store.pair_holder(name)
    last, last_ok, last_error = (store.last_run(name), store.last_ok_run(name),
                                 store.last_error_run(name))
    pending = store.pending_intents(name)
    leaks = store.open_leaks(name)
    sweep = store.get_sweep(name)
    return {
        "name": name, "tracker": pair.tracker, "enabled": pair.enabled,
        "interval_seconds": pair.interval_seconds, "stale_after_seconds": stale_after(pair),
        "links": {"active": store.count_links(name, "active"),
                  "orphaned": store.count_links(name, "orphaned")},
        "cursors": cursors,
        "sweep": None if sweep is None else {
            "rounds": sweep.rounds, "after_link": sweep.after_link,
            "round_started_at": _iso(sweep.round_started_at),
            "last_round_seconds": None if sweep.last_round_seconds is None
            else round(sweep.last_round_seconds)},
        "holder": None if holder is None else {
            "host": holder.host, "pid": holder.pid, "since": _iso(holder.since),
            "text": str(holder)},
        "last_run": None if last is None else _run(last, holder, now),
        "last_ok_run": None if last_ok is None else _run(last_ok, holder, now),
        "last_error": None if last_error is None else {
            "started_at": _iso(last_error.started_at),
            "age_seconds": _seconds(now, last_error.started_at), "error": last_error.error},
        "pending_intents": {"pending": sum(1 for i in pending if i.status == "pending"),
                            "failed": sum(1 for i in pending if i.status == "failed")},
        "failing_objects": [_failure(f) for f in store.list_failures(name)],
        "leaks": [_leak(leak) for leak in leaks],
        "problems": _problems(pair, now, last, last_ok, last_error, holder, leaks),
    }


def api_budgets(cfg: AppConfig, store: StateStore, now: datetime) -> list[dict[str, Any]]:
    """Per service: the configured request budget and the rate learned from its 429s
    (None until a 429 taught one), as the last process to save it left it."""
    stored = {r.key: r for r in store.learned_rates()}
    configured = {**{cfg.brand_service(name): b.http.requests_per_minute
                     for name, b in cfg.brands.items()},
                  **{name: t.http.requests_per_minute for name, t in cfg.trackers.items()}}
    out = []
    for service, key in budget_keys(cfg).items():
        found = stored.get(key)
        out.append({
            "service": service, "configured_per_minute": configured[service],
            "learned_per_minute": None if found is None else round(found.per_minute, 2),
            "refused_at_per_minute": None if found is None or found.refused_at_per_minute
            is None else round(found.refused_at_per_minute, 2),
            "learned_at": None if found is None else _iso(found.updated_at),
            "learned_age_seconds": None if found is None else _seconds(now, found.updated_at)})
    return out


def status_document(cfg: AppConfig, store: StateStore, now: datetime) -> dict[str, Any]:
    pairs = [{**pair_status(p, store, now), "brand": cfg.brand_of(p)} for p in cfg.pairs]
    return {"format": FORMAT, "generated_at": now.isoformat(),
            "state_database": store.location, "ok": not any(p["problems"] for p in pairs),
            "api_budgets": api_budgets(cfg, store, now), "pairs": pairs}


def render_budget(budget: dict[str, Any], now: datetime) -> str:
    head = (f"api budget {budget['service']}: {budget['configured_per_minute']:g} "
            "requests/min configured")
    if budget["learned_per_minute"] is None:
        return f"{head}, no limit learned (no 429 yet)"
    refused = budget["refused_at_per_minute"]
    why = f"; the server refused {refused:g}/min" if refused is not None else ""
    return (f"{head}, running at {budget['learned_per_minute']:g} learned from 429s{why} "
            f"(saved {_when(budget['learned_at'], now)})")


def _when(value: str | None, now: datetime) -> str:
    return _age(now, datetime.fromisoformat(value) if value else None)


def render_pair(doc: dict[str, Any], now: datetime) -> list[str]:
    # The brand is named only where a config has named brands ([reamaze] is one).
    brand = doc.get("brand", SINGLE_BRAND)
    shown = f"brand={brand} " if brand != SINGLE_BRAND else ""
    lines = [f"[{doc['name']}] {shown}tracker={doc['tracker']} enabled={doc['enabled']} "
             f"links={doc['links']['active']} orphaned={doc['links']['orphaned']}"]
    for side, cur in doc["cursors"].items():
        mark = cur["watermark"] or "none"
        lines.append(f"  cursor {side}: {mark} "
                     f"({_when(cur['watermark'], now) if cur['watermark'] else 'never polled'})")
    sweep = doc["sweep"]
    if sweep is not None:
        took = (f" (the last took {_span(sweep['last_round_seconds'])})"
                if sweep["last_round_seconds"] is not None else "")
        lines.append(f"  sweep: {sweep['rounds']} round(s) done{took}; this one is past "
                     f"link #{sweep['after_link']}")
    if doc["holder"] is not None:
        lines.append(f"  worked by {doc['holder']['text']}")
    last = doc["last_run"]
    if last is None:
        lines.append("  last run: never")
    else:
        counts = ", ".join(f"{k}={v}" for k, v in last["counts"].items()) or "-"
        lines.append(f"  last run: {last['kind']} {_when(last['started_at'], now)} "
                     f"{last['state']}; {counts}")
    err = doc["last_error"]
    if err is not None:
        lines.append(f"  last error ({_when(err['started_at'], now)}): {err['error']}")
    pending = doc["pending_intents"]
    lines.append(f"  pending intents: {pending['pending']}, failed writes: {pending['failed']}")
    for leak in doc["leaks"]:
        lines.append(f"  LEAK: {leak['side']} {leak['ticket_id']} comment "
                     f"{leak['comment_id']} (conversation {leak['conversation_id']}) is a "
                     f"PUBLIC copy of internal content, found {_when(leak['detected_at'], now)};"
                     " internal notes to the tracker are paused until it is deleted: "
                     f"{leak['detail'][:200]}")
    failures = doc["failing_objects"]
    if failures:
        lines.append(f"  failing objects: {len(failures)} (`reamaze-sync retry` tries them "
                     "again now, `skip` leaves them alone)")
        for f in failures[:SHOWN_FAILURES]:
            flag = (" (skipped)" if f["skipped"] else "" if f["auto_retry"]
                    else " (no longer retried automatically)")
            lines.append(f"    {f['side']} {f['object_id']}: {f['attempts']} attempts{flag}: "
                         f"{f['error'][:120]}")
        if len(failures) > SHOWN_FAILURES:
            lines.append(f"    … {len(failures) - SHOWN_FAILURES} more (`status --json` "
                         "lists them all)")
    lines += [f"  PROBLEM: {p['message']}" for p in doc["problems"]]
    return lines


def render_status(cfg: AppConfig, store: StateStore, now: datetime) -> str:
    doc = status_document(cfg, store, now)
    return "\n".join(line for pair in doc["pairs"] for line in render_pair(pair, now))


def run_status(cfg: AppConfig, now: datetime, *, as_json: bool,
               echo: Callable[[str], None]) -> int:
    """The `status` command: 1 when a pair has a problem (named on its ``PROBLEM:``
    lines), else 0. With ``as_json`` a missing or outdated database is a document too
    (``ok`` false, ``error`` set), so a monitor always has JSON to read."""
    try:
        # Read-only: a status must show the state, never create an empty one where the
        # path points by mistake, nor upgrade the schema under a running daemon.
        store = StateStore(cfg.state.url, read_only=True)
    except (StateMissing, StateOutdated) as exc:
        if not as_json:
            raise
        echo(json.dumps({"format": FORMAT, "generated_at": now.isoformat(),
                         "state_database": exc.location, "ok": False, "error": str(exc),
                         "api_budgets": [], "pairs": []}, indent=2))
        return 1
    try:
        doc = status_document(cfg, store, now)
    finally:
        store.close()
    if as_json:
        echo(json.dumps(doc, indent=2))
    else:
        echo(f"state database: {doc['state_database']}")
        echo("\n".join(render_budget(b, now) for b in doc["api_budgets"]))
        echo("\n".join(line for pair in doc["pairs"] for line in render_pair(pair, now)))
    return 0 if doc["ok"] else 1
