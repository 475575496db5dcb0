"""The helpdesk side of the contract: the Re:amaze connector against its simulator maps
errors like every tracker connector (``error_classes``) and walks its change feed across
page edges without losing or repeating a conversation."""

from __future__ import annotations

from collections import Counter

import pytest
from error_classes import ERROR_IDS, ERRORS

from connectors.reamaze.connector import ReamazeConnector
from connectors.reamaze.sim.http import PAGE_SIZE
from connectors.reamaze.sim.simulator import ReamazeSimulator
from syncer.errors import SyncError
from syncer.models import ChangePage, Cursor

pytest_plugins = ["reamaze_fixtures"]


def walk(conn: ReamazeConnector, since: Cursor | None) -> tuple[list[str], Cursor | None]:
    pages: list[ChangePage] = list(conn.iter_changes(since))
    checkpoints = [p.checkpoint for p in pages if p.checkpoint is not None]
    return [t.id for p in pages for t in p.tickets], checkpoints[-1] if checkpoints else since


@pytest.mark.parametrize(("status", "error"), ERRORS, ids=ERROR_IDS)
def test_error_status_maps_to_its_recovery_class(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator, status: int,
        error: type[SyncError]) -> None:
    """Each HTTP error from Re:amaze is raised as the class saying what to do next."""
    slug = rz_sim.add_conversation("Broken", "it broke", "cu@x.example")
    rz_sim.faults.add(status, times=None, method="GET")
    with pytest.raises(error) as raised:
        rz_conn.get_ticket(slug)
    assert raised.value.status == status and raised.value.connector


def test_change_feed_crosses_page_edges_once(
        rz_conn: ReamazeConnector, rz_sim: ReamazeSimulator) -> None:
    """More than two pages of conversations are each listed once; an idle poll lists none;
    a conversation that changes afterwards is listed again, once."""
    made = []
    for n in range(2 * PAGE_SIZE + 5):
        made.append(rz_sim.add_conversation(f"Issue {n}", "body", f"c{n}@x.example"))
        rz_sim.clock.advance(1)
    rz_sim.clock.advance(5)
    first, cursor = walk(rz_conn, None)
    assert Counter(first) == Counter(made)
    idle, cursor = walk(rz_conn, cursor)
    assert idle == []
    rz_sim.clock.advance(5)
    rz_sim.add_customer_message(made[PAGE_SIZE], "still broken")
    rz_sim.clock.advance(5)
    changed, _ = walk(rz_conn, cursor)
    assert changed == [made[PAGE_SIZE]]
