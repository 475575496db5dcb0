"""Tracker comments as readable text for Re:amaze (syncer/plaintext.py): the markup is
parsed by its own parser and written as plain text, links as ``text (url)``."""

from __future__ import annotations

import pytest

from syncer.markup import Markup
from syncer.plaintext import markup_to_text

CASES: list[tuple[Markup, str, str]] = [
    ("common_mark", "- one\n- two\n  - nested", "- one\n- two\n  - nested"),
    ("common_mark", "1. a\n2. b", "1. a\n2. b"),
    ("common_mark", "See [the docs](https://docs.example/x) now",
     "See the docs (https://docs.example/x) now"),
    ("common_mark", "<https://docs.example/x>", "https://docs.example/x"),
    ("common_mark", "Run `make test`", "Run `make test`"),
    ("common_mark", "```python\ndef f():\n    pass\n```", "```\ndef f():\n    pass\n```"),
    ("common_mark", "> quoted\n\nreply", "> quoted\n\nreply"),
    ("common_mark", "**bold** and *it* and ~~gone~~", "bold and it and gone"),
    ("common_mark", "Fixed.\n<!-- reamaze-sync:rs-abc -->", "Fixed."),
    ("common_mark", "line one\nline two", "line one\nline two"),
    ("common_mark", "![shot](https://x.example/s.png)", "shot"),
    ("glfm", "- [x] done\n- see [MR](https://gl.example/mr/1)",
     "- [x] done\n- see MR (https://gl.example/mr/1)"),
    ("gfm", "| a | b |\n|---|---|\n| 1 | 2 |", "a | b\n\n1 | 2"),
    ("textile", "* one\n* two\n** nested", "- one\n- two\n  - nested"),
    ("textile", "# a\n# b", "1. a\n2. b"),
    ("textile", 'See "the docs":https://docs.example/x now',
     "See the docs (https://docs.example/x) now"),
    ("textile", "Run @make test@", "Run `make test`"),
    ("textile", "<pre>\ndef f():\n    pass\n</pre>", "```\ndef f():\n    pass\n```"),
    ("textile", "bq. quoted", "> quoted"),
    ("textile", "*bold* and _it_", "bold and it"),
    ("textile", "Fixed.\n\n<!-- reamaze-sync:rs-abc -->", "Fixed."),
    ("plain", "*as is* <b>", "*as is* <b>"),
]


@pytest.mark.parametrize(("markup", "source", "text"), CASES,
                         ids=[f"{c[0]}:{c[1][:25]}" for c in CASES])
def test_tracker_markup_reads_as_text(markup: Markup, source: str, text: str) -> None:
    """Lists, links, code and quotes stay readable; emphasis and hidden markers go."""
    assert markup_to_text(markup, source) == text
