"""Default data of a fresh Redmine 5.0.4 (``redmine:load_default_data``, language en).

Copied from a real instance (``/roles/:id.json``, ``/trackers.json``, the ``workflows``
table for tracker 1; trackers 2 and 3 have the same transitions), so the simulator's
permissions and workflow refusals match the real server's.
"""

from __future__ import annotations

STATUSES: tuple[tuple[int, str, bool], ...] = (
    (1, "New", False), (2, "In Progress", False), (3, "Resolved", False),
    (4, "Feedback", False), (5, "Closed", True), (6, "Rejected", True),
)
TRACKERS: tuple[tuple[int, str], ...] = ((1, "Bug"), (2, "Feature"), (3, "Support"))
TRACKER_FIELDS = ("assigned_to_id", "category_id", "fixed_version_id", "parent_issue_id",
                  "start_date", "due_date", "estimated_hours", "done_ratio", "description")
PRIORITIES: tuple[tuple[int, str, bool], ...] = (
    (1, "Low", False), (2, "Normal", True), (3, "High", False), (4, "Urgent", False),
    (5, "Immediate", False),
)
DEFAULT_PRIORITY = 2
DEFAULT_STATUS = 1

NON_MEMBER_ROLE = 1
ANONYMOUS_ROLE = 2



def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


MANAGER = _words(
    "add_project edit_project close_project delete_project select_project_modules manage_members "
    "manage_versions add_subprojects manage_public_queries save_queries view_issues add_issues "
    "edit_issues edit_own_issues copy_issues manage_issue_relations manage_subtasks "
    "set_issues_private set_own_issues_private add_issue_notes edit_issue_notes "
    "edit_own_issue_notes view_private_notes set_notes_private delete_issues "
    "view_issue_watchers add_issue_watchers delete_issue_watchers import_issues "
    "manage_categories view_time_entries log_time edit_time_entries edit_own_time_entries "
    "manage_project_activities log_time_for_other_users import_time_entries view_news "
    "manage_news comment_news view_documents add_documents edit_documents delete_documents "
    "view_files manage_files view_wiki_pages view_wiki_edits export_wiki_pages edit_wiki_pages "
    "rename_wiki_pages delete_wiki_pages delete_wiki_pages_attachments view_wiki_page_watchers "
    "add_wiki_page_watchers delete_wiki_page_watchers protect_wiki_pages manage_wiki "
    "view_changesets browse_repository commit_access manage_related_issues manage_repository "
    "view_messages add_messages edit_messages edit_own_messages delete_messages "
    "delete_own_messages view_message_watchers add_message_watchers delete_message_watchers "
    "manage_boards view_calendar view_gantt"
)
DEVELOPER = _words(
    "manage_versions manage_categories view_issues add_issues edit_issues view_private_notes "
    "set_notes_private manage_issue_relations manage_subtasks add_issue_notes save_queries "
    "view_gantt view_calendar log_time view_time_entries view_news comment_news view_documents "
    "view_wiki_pages view_wiki_edits edit_wiki_pages delete_wiki_pages view_messages "
    "add_messages edit_own_messages view_files manage_files browse_repository view_changesets "
    "commit_access manage_related_issues"
)
REPORTER = _words(
    "view_issues add_issues add_issue_notes save_queries view_gantt view_calendar log_time "
    "view_time_entries view_news comment_news view_documents view_wiki_pages view_wiki_edits "
    "view_messages add_messages edit_own_messages view_files browse_repository view_changesets"
)
NON_MEMBER = _words(
    "view_issues add_issues add_issue_notes save_queries view_gantt view_calendar "
    "view_time_entries view_news comment_news view_documents view_wiki_pages view_wiki_edits "
    "view_messages add_messages view_files browse_repository view_changesets"
)
ANONYMOUS = _words(
    "view_issues view_gantt view_calendar view_time_entries view_news view_documents "
    "view_wiki_pages view_wiki_edits view_messages view_files browse_repository view_changesets"
)

# (id, name, permissions, builtin, issues_visibility); ids 1 and 2 are the builtin roles.
ROLES: tuple[tuple[int, str, tuple[str, ...], int, str], ...] = (
    (1, "Non member", NON_MEMBER, 1, "default"),
    (2, "Anonymous", ANONYMOUS, 2, "default"),
    (3, "Manager", MANAGER, 0, "all"),
    (4, "Developer", DEVELOPER, 0, "default"),
    (5, "Reporter", REPORTER, 0, "default"),
)

# role id -> {old status -> allowed new statuses}; the current status is always allowed.
_ALL = {1, 2, 3, 4, 5, 6}
WORKFLOW: dict[int, dict[int, frozenset[int]]] = {
    3: {s: frozenset(_ALL - {s}) for s in _ALL},
    4: {1: frozenset({2, 3, 4, 5}), 2: frozenset({3, 4, 5}), 3: frozenset({2, 4, 5}),
        4: frozenset({2, 3, 5})},
    5: {1: frozenset({5}), 2: frozenset({5}), 3: frozenset({4, 5}), 4: frozenset({5})},
}

MAX_ATTACHMENT_BYTES = 5120 * 1024  # Setting.attachment_max_size (KB) default
