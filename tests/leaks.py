"""Finding a credential in text whatever encoding it went through.

A search for the exact secret misses it once it was escaped (``\\/`` in JSON, ``%2F`` in a
URL, a doubled backslash in a repr) or cut in half by a length limit. So a secret is
searched by its fragments: every eight consecutive letters and digits of the secret (pass
its base64 Basic form as a secret too). No encoding the engine meets rewrites letters or
digits, so any eight of them that got through, escaped or cut, are found.
"""

from __future__ import annotations

import base64
import re
import sqlite3
from pathlib import Path

RUN = re.compile(r"[A-Za-z0-9]{8,}")
WIDTH = 8


def basic(login: str, token: str) -> str:
    return base64.b64encode(f"{login}:{token}".encode()).decode()


def fragments(*secrets: str) -> set[str]:
    out: set[str] = set()
    for secret in secrets:
        for run in RUN.findall(secret):
            out.update(run[i:i + WIDTH] for i in range(len(run) - WIDTH + 1))
    return out


def found(text: str, frags: set[str]) -> list[str]:
    return sorted(f for f in frags if f in text)


def dump_sqlite(path: Path) -> str:
    """Every column of every row of every table, as text."""
    db = sqlite3.connect(path)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        lines = [f"{t}: {row!r}" for t in tables for row in db.execute(f'SELECT * FROM "{t}"')]
    finally:
        db.close()
    return "\n".join(lines)
