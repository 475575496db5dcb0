"""What the package declares: every library its code imports, bounded where releases break
the API, the tools only developers run kept out of the runtime and test installs, and the
license it claims."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
PACKAGES = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
# Part of another distribution, which pins its exact version: declaring it would fight that.
PROVIDED_BY = {"pydantic-core": "pydantic"}


def _requirements(specs: list[str]) -> dict[str, Requirement]:
    return {Requirement(s).name.lower().replace("_", "-"): Requirement(s) for s in specs}


def _imported_top_level_modules() -> set[str]:
    """The top-level modules the shipped packages import (at module level or inside
    functions), without the standard library and the project's own packages."""
    found: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - set(PACKAGES) - {"__future__"}


def test_every_imported_library_is_a_declared_dependency() -> None:
    """A library the code imports is declared, not merely pulled in by another one
    (SQLAlchemy came with sqlmodel until sqlmodel changed its own pins)."""
    declared = set(_requirements(PROJECT["dependencies"]))
    extras = PROJECT["optional-dependencies"]
    optional = set(_requirements(extras["postgres"]))
    distributions = packages_distributions()
    undeclared = {}
    for module in sorted(_imported_top_level_modules()):
        dists = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        dists |= {PROVIDED_BY[d] for d in dists if d in PROVIDED_BY}
        if not dists & (declared | optional):
            undeclared[module] = sorted(dists)
    assert not undeclared, f"imported but not declared in [project] dependencies: {undeclared}"


def test_sqlalchemy_and_sqlmodel_are_bounded() -> None:
    """SQLAlchemy is declared within the range sqlmodel supports (up to, not including,
    2.2) from the oldest release the store works with (2.0.21 cannot map its dict[str, Any]
    columns), and sqlmodel below 0.1: its 0.0.x releases change what they accept."""
    reqs = _requirements(PROJECT["dependencies"])
    sqlalchemy, sqlmodel = reqs["sqlalchemy"].specifier, reqs["sqlmodel"].specifier
    assert Version("2.0.22") in sqlalchemy and Version("2.1.9") in sqlalchemy
    assert Version("2.0.21") not in sqlalchemy and Version("2.2.0") not in sqlalchemy
    assert Version("0.0.22") in sqlmodel and Version("0.1.0") not in sqlmodel


def test_developer_tools_are_a_dev_extra() -> None:
    """ruff and mypy are for developers and CI (`.[dev]`); the test extra runs the suite
    without them, and CI installs both extras."""
    extras = PROJECT["optional-dependencies"]
    dev, test = _requirements(extras["dev"]), _requirements(extras["test"])
    assert {"ruff", "mypy"} <= set(dev)
    assert not {"ruff", "mypy"} & set(test)
    assert not {"ruff", "mypy"} & set(_requirements(PROJECT["dependencies"]))
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -q -e '.[test,dev]'" in ci
    assert ".venv/bin/ruff check ." in ci and ".venv/bin/mypy" in ci


def test_license_file_is_the_declared_mit_license() -> None:
    """The LICENSE file exists, is the MIT license the metadata declares, and is shipped."""
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in text
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
