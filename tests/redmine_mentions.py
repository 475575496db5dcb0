"""Redmine 5.0.4's mention scan, ported line for line so tests can ask "would Redmine mail
anyone for this text?" without a server.

Source: /usr/share/redmine/lib/redmine/acts/mentionable.rb (``scan_for_mentioned_users`` and
``MENTION_PATTERN``). It runs on the raw stored text (notes, issue descriptions), not on the
rendered page: quoted lines and, per ``Setting.text_formatting``, ``<pre>`` blocks (textile)
or ``` / ~~~ fenced blocks (markdown, common_mark) are cut out first; inline code is not.

What Ruby means and Python does not, made explicit here:
* ``\\W`` and ``\\s`` are ASCII-only in Ruby (Python's are Unicode): ``é@bob`` mentions bob.
* ``^`` and ``$`` always match at line breaks; ``/m`` is Python's DOTALL.
* ``[[:punct:]]`` (Onigmo, UTF-8 strings) is Unicode punctuation (categories P*) plus the
  ASCII symbols ``$+<=>^`|~``.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import cache

_RUBY_SPACE = "[ \\t\\n\\v\\f\\r]"


@cache
def _punct_class() -> str:
    chars = [chr(c) for c in range(sys.maxunicode + 1)
             if unicodedata.category(chr(c)).startswith("P")] + list("$+<=>^`|~")
    return "[" + "".join(re.escape(c) for c in sorted(set(chars))) + "]"


@cache
def _mention_pattern() -> re.Pattern[str]:
    return re.compile(
        r"(?:^|[^A-Za-z0-9_])"
        r"@([A-Za-z0-9_\-@.]*?)"
        r"(?="
        rf"(?={_punct_class()}[^A-Za-z0-9_/])|"
        r",|"
        r"\.+$|"
        rf"{_RUBY_SPACE}|"
        r"\]|"
        r"<|"
        r"$)",
        re.M | re.I)


_QUOTED = re.compile(r"\r\n(?:>" + _RUBY_SPACE + r")+(.*?)\r\n", re.S)
_PRE = re.compile(r"<pre>(.*?)</pre>", re.S)
_FENCED = re.compile(r"(~~~|```)(.*?)(~~~|```)", re.S)


def redmine_mentions(text: str, text_formatting: str) -> list[str]:
    """The logins Redmine would look up for ``text``.

    Issue descriptions are stored with CRLF line ends (``Issue#description=``), notes as
    sent; the quoted-line cut only matches CRLF, so both forms are scanned.
    """
    found: list[str] = []
    lf = text.replace("\r\n", "\n")
    for content in (lf, lf.replace("\n", "\r\n")):
        content = _QUOTED.sub("", content)
        if text_formatting == "textile":
            content = _PRE.sub("", content)
        elif text_formatting in ("markdown", "common_mark"):
            content = _FENCED.sub("", content)
        found += [m for m in _mention_pattern().findall(content) if m and m not in found]
    return found
