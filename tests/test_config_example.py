"""config.example.toml is a real, complete, documented configuration."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from syncer.config import AppConfig, PairConfig, load_config, tracker_models

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def _keys(data: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for key, value in data.items():
        out.add(key)
        if isinstance(value, dict):
            out |= _keys(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    out |= _keys(item)
    return out


def _fields(model: type[BaseModel]) -> set[str]:
    out: set[str] = set()
    for name, info in model.model_fields.items():
        out.add(name)
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out |= _fields(ann)
    return out


def test_example_loads_through_the_real_schema() -> None:
    """The shipped example passes the same strict validation as a user's file."""
    cfg = load_config(EXAMPLE)
    assert cfg.pairs[0].tracker in cfg.trackers


def test_example_shows_every_setting() -> None:
    """Every key the schema accepts appears in the example, set or commented out."""
    text = EXAMPLE.read_text()
    shown = _keys(tomllib.loads(text)) | set(re.findall(r"^#\s*(\w+)\s*=", text, re.M))
    dynamic = {"trackers"}  # table keyed by the user's tracker names
    every_tracker = set().union(*(_fields(m) for m in tracker_models().values()))
    missing = (_fields(AppConfig) | _fields(PairConfig) | every_tracker) - shown - dynamic
    assert not missing, f"not in config.example.toml: {sorted(missing)}"


def test_readme_documents_every_key_of_the_example() -> None:
    """The README's configuration table names every key the example uses."""
    readme = (ROOT / "README.md").read_text()
    data = tomllib.loads(EXAMPLE.read_text())
    # names the user chooses, not settings
    user_named = {"main", "github", "jane@acme.example", "feature", "incident"}
    def documented(key: str) -> bool:
        as_section = re.search(rf"`\[+[\w.]*\b{key}\b[\w.]*\]+", readme)
        as_key = re.search(rf"(`|\] |, `){key}`", readme)
        return bool(as_section or as_key)

    undocumented = sorted(k for k in _keys(data) - user_named if not documented(k))
    assert not undocumented, f"README does not document: {undocumented}"
