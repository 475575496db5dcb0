"""The tracker registry is the one place a tracker kind is declared."""

from __future__ import annotations

import inspect

from connectors.registry import TRACKER_KINDS, TRACKERS
from connectors.settings import TrackerSettings
from syncer.config import AppConfig, tracker_kinds


def test_each_kind_is_registered_once_under_its_models_tag() -> None:
    """The registry key is the tag the config model is selected by, and no tag repeats."""
    assert len(TRACKER_KINDS) == len(TRACKERS)
    for kind, entry in TRACKER_KINDS.items():
        assert entry.config.kind_tag() == kind
        assert entry.secret_key == entry.config.secret_key


def test_each_kind_lives_in_its_own_connector_folder() -> None:
    """A tracker's config model and connector come from ``connectors/<kind>/``."""
    for kind, entry in TRACKER_KINDS.items():
        assert entry.config.__module__ == f"connectors.{kind}.config"
        assert issubclass(entry.config, TrackerSettings)
        owner = getattr(entry.connect, "__self__", None)
        assert inspect.isclass(owner) and owner.__module__ == f"connectors.{kind}.connector"


def test_each_kind_names_its_secret_variable_with_a_default() -> None:
    """``secret_key`` is a field of the model, so ``check`` can find the variable unset."""
    for entry in TRACKERS:
        field = entry.config.model_fields[entry.secret_key]
        assert isinstance(field.default, str) and field.default


def test_the_config_accepts_exactly_the_registered_kinds() -> None:
    """``[trackers.NAME]`` is validated against the registry's models and no other."""
    assert tracker_kinds() == sorted(TRACKER_KINDS)
    for kind, entry in TRACKER_KINDS.items():
        data = {"reamaze": {"brand": "acme", "login_email": "a@example.com"},
                "trackers": {"t": _minimal(kind)}, "pairs": []}
        assert type(AppConfig.model_validate(data).trackers["t"]) is entry.config


def _minimal(kind: str) -> dict[str, object]:
    """The least a section of ``kind`` needs: its required fields, each a plausible value."""
    # "42": a numeric project id is valid for every kind with a project (Redmine, GitLab).
    values = {"base_url": "https://tracker.example.com", "project": "42", "repo": "octo/web"}
    model = TRACKER_KINDS[kind].config
    required = [n for n, f in model.model_fields.items() if f.is_required() and n != "kind"]
    return {"kind": kind, **{n: values[n] for n in required}}
