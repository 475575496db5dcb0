"""Can the API user keep a note private in the project?

Redmine silently drops ``private_notes`` (the note is saved *public*) when the user's role
lacks ``set_notes_private``, so the permission is checked before any internal content is
sent. Admins have every permission; otherwise the roles of the user's membership in the
project are read from ``/roles/:id.json``. No membership means "no": the non-member role
rarely has the permission and refusing is the safe answer.

The answer is cached per connector for ``ttl`` seconds: it only decides whether to try.
Every private note is read back after writing anyway (notes.py), because a role can lose
the permission between this check and the write; a detected leak sets the cache to "no".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from connectors.http import ApiClient, Clock
from connectors.redmine.wire import Project, RoleWire, UserWire, parse_one

log = structlog.get_logger("reamaze_sync.redmine")

PERMISSION = "set_notes_private"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str


class PrivateNotesGuard:
    def __init__(self, api: ApiClient, project: Callable[[], Project], clock: Clock,
                 ttl: float = 60.0) -> None:
        self.api = api
        self.project = project
        self.clock = clock
        self.ttl = ttl
        self._cached: tuple[float, Verdict] | None = None
        self.user_id: str | None = None  # learnt with the permission answer

    def verdict(self) -> Verdict:
        now = self.clock.monotonic()
        if self._cached is not None and now - self._cached[0] < self.ttl:
            return self._cached[1]
        verdict = self._compute()
        self._cached = (now, verdict)
        return verdict

    def revoke(self, reason: str) -> None:
        """Remember that private notes do not work, whatever the roles claim."""
        self._cached = (self.clock.monotonic(), Verdict(False, reason))

    def _compute(self) -> Verdict:
        me = parse_one(UserWire, self.api.get_json("/users/current.json",
                                                   params={"include": "memberships"}), "user")
        self.user_id = str(me.id)
        if me.admin:
            return Verdict(True, f"{me.login} is an administrator")
        project = self.project()
        role_ids = sorted({role.id for m in me.memberships or ()
                           if m.project is not None and m.project.id == project.id
                           for role in m.roles})
        if not role_ids:
            return Verdict(False, f"{me.login} is not a member of project {project.identifier}")
        for role_id in role_ids:
            role = parse_one(RoleWire, self.api.get_json(f"/roles/{role_id}.json"), "role",
                             object_id=str(role_id))
            if PERMISSION in role.permissions:
                return Verdict(True, f"role {role.name!r} has {PERMISSION}")
        return Verdict(False, f"no role of {me.login} in project {project.identifier} "
                              f"has {PERMISSION}")
