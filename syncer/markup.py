r"""Text from outside made inert for the tracker's markup: a reader sees the same
characters, and nothing in them can hide, restyle, link or embed anything.

One escaper per markup, chosen by the tracker connector's ``Capabilities.markup``:
``plain`` (shown verbatim: nothing to do) and Redmine's two ``text_formatting`` settings,
``textile`` and ``common_mark``. Only text from outside goes through here; the engine's own
words (attribution headers, the hidden marker line) keep their markup.

Escaping is targeted, not blanket: a character is escaped where it can start (or, inside
our own emphasis, end) a construct, so ordinary prose is written unchanged. Each rule
answers a construct of Redmine 5.0.4 (source under /usr/share/redmine); the real-server
test (tests/test_redmine_markup_real.py) renders hostile and random text to check them.

* Redmine itself, both formats (app/helpers/application_helper.rb ``textilizable``).
  ``catch_macros`` runs ``{{name(args)}}`` on the raw text before formatting, so ``{``
  never stays bare. After formatting, ``parse_redmine_links`` and ``parse_wiki_links``
  turn ``#12``, ``##12``, ``r12``, ``user:x``, ``document#1``, ``@login`` and ``[[Page]]``
  found in the HTML text into links, and take a ``!`` before them for an escape, which
  they drop. Textile keeps numeric character references as they are, so there the
  character becomes one; CommonMark decodes references, so there an invisible U+200B ZERO
  WIDTH SPACE goes where the link pattern needs the next character.
* textile (lib/redmine/wiki_formatting/textile/redcloth3.rb, formatter.rb). RedCloth3 has
  no backslash escape, but passes ``&#42;`` and the like through (``incoming_entities``)
  and the browser shows the character. Always written as references: ``<`` (tags, and
  comments: ``remove_html_comments`` swallows everything up to the next ``-->``), ``>``
  (blockquotes), ``&`` (references, and ``x%x%``, RedCloth's stand-in for ``&``), ``%``,
  ``#`` (lists, issue links), ``|`` (tables), ``( ) [ ] { }`` (attributes, abbreviations,
  footnotes, macros, wiki links) and ``*`` (our own emphasis, lists). Written as references
  unless they follow an ASCII letter or digit (after one they cannot open anything):
  ``_ - + ^ ~ = ?`` (spans, ``==notextile==``, rules), ``!`` (images), ``@`` (``@code@``),
  ``r`` before a digit (revisions). In context: ``"`` before ``:`` (links), ``:`` in
  ``://`` or after a Redmine link prefix, ``.`` after ``www`` (autolinks would show a
  reference inside a URL literally) or ending a ``[a-z]+\d*`` line start (``h1.``,
  ``p=.``, ``bq.``), and leading spaces and tabs (a code block after a blank line).
* CommonMark (common_mark/formatter.rb: cmark-gfm with tables, strikethrough, autolinks,
  footnotes; raw HTML allowed, then sanitised). Any ASCII punctuation may be
  backslash-escaped. Escaped anywhere: ``\ ` * _ { } [ ] < > # | ~ &``; at a line start:
  ``- + =`` and the ``.`` / ``)`` of ``1.`` / ``1)``; ``:`` before ``//`` and ``.`` after
  ``www`` (autolinks). Leading spaces and tabs become references: four make a code block.
  ``@`` is never backslash-escaped: Redmine's mention scan reads the raw text and takes
  ``\`` for a word boundary, so ``\@login`` would mail the user (mentions are
  ``syncer.render``'s job).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

Markup = Literal["plain", "textile", "common_mark", "gfm", "glfm"]

_ZWSP = "\u200b"
_DIGITS = frozenset("0123456789")  # Ruby's \d, and CommonMark's list markers, are ASCII
_LINK_PREFIXES = ("attachment", "document", "version", "forum", "news", "message", "project",
                  "commit", "source", "export", "user")


def _ref(char: str) -> str:
    return f"&#{ord(char)};"


def _after_word(line: str, i: int) -> bool:
    """Whether ``line[i]`` follows an ASCII letter or digit (RedCloth's openers need a
    line start, a space, ``>`` or ``(`` before them; Redmine's links a non-word)."""
    return i > 0 and line[i - 1].isascii() and line[i - 1].isalnum()


def _link_prefix_before(line: str, i: int) -> bool:
    return any(line.endswith(p, 0, i) for p in _LINK_PREFIXES)


# --- textile -------------------------------------------------------------------------------

# "*" is also our own emphasis: inside it, any "*" would close it.
_TEXTILE_ALWAYS = frozenset("&<>#%[]{}()|*")
_TEXTILE_OPENERS = frozenset("_-+^~=?!@")
_TEXTILE_CANDIDATES = re.compile(r"^[ \t]+|[&<>#%\[\]{}()|*_\-+^~=?!@\".:]|r(?=[0-9])")
_TEXTILE_BLOCK_SIGNATURE = re.compile(r"[a-z]+\d*[=\-^~]*")


def _textile_line(line: str) -> str:
    def one(m: re.Match[str]) -> str:
        found, i = m.group(), m.start()
        if found[0] in " \t":
            return "".join(_ref(c) for c in found)
        if found in _TEXTILE_ALWAYS:
            return _ref(found)
        if found in _TEXTILE_OPENERS or found == "r":
            return found if _after_word(line, i) else _ref(found)
        if found == '"':
            return _ref(found) if line.startswith(":", i + 1) else found
        if found == ":":
            return (_ref(found) if line.startswith("//", i + 1) or _link_prefix_before(line, i)
                    else found)
        # "." ends a block signature ("h1.", "p=.", "bq.") or a "www." autolink.
        signature = _TEXTILE_BLOCK_SIGNATURE.fullmatch(line, 0, i) is not None
        return _ref(found) if signature or line[max(0, i - 3):i].lower() == "www" else found

    return _TEXTILE_CANDIDATES.sub(one, line)


def escape_textile(text: str) -> str:
    return "\n".join(_textile_line(line) for line in _lines(text))


# --- CommonMark ----------------------------------------------------------------------------

_CM_ALWAYS = frozenset("\\`*_{}[]<>#|~&")
_CM_LINE_START = frozenset("-+=")
_CM_CANDIDATES = re.compile(
    r"^[ \t]+|^[0-9]+[.)]|[\\`*_{}\[\]<>#|~&\-+=.:]|r(?=[0-9])|!(?=[a-z0-9_\-#:@])")


def _commonmark_line(line: str) -> str:
    def one(m: re.Match[str]) -> str:
        found, i = m.group(), m.start()
        if found[0] in " \t":
            return "".join(_ref(c) for c in found)
        if found[0] in _DIGITS:  # an ordered list marker "1." / "1)"
            return f"{found[:-1]}\\{found[-1]}"
        if found == "#":
            # Redmine links "#12", "##12", "#note-1" are found in the rendered text.
            link = line.startswith(("#", "note"), i + 1) or line[i + 1:i + 2] in _DIGITS
            return "\\#" + (_ZWSP if link else "")
        if found == "[":
            return "\\[" + _ZWSP if line.startswith("[", i + 1) else "\\["
        if found in _CM_ALWAYS:
            return "\\" + found
        if found in _CM_LINE_START:
            return "\\" + found if i == 0 else found
        if found == "r":
            return found if _after_word(line, i) else found + _ZWSP
        if found == "!":
            # Redmine's link pattern takes "!" for its escape and drops it ("!:x").
            return found + _ZWSP
        if found == ":":
            if line.startswith("//", i + 1):
                return "\\:"
            return _ZWSP + found if _link_prefix_before(line, i) else found
        return "\\." if line[max(0, i - 3):i].lower() == "www" else found

    return _CM_CANDIDATES.sub(one, line)


def escape_commonmark(text: str) -> str:
    return "\n".join(_commonmark_line(line) for line in _lines(text))


# --- choosing --------------------------------------------------------------------------------

def _lines(text: str) -> list[str]:
    # Both renderers treat a lone CR as a line break, and every rule above is per line.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _plain(text: str) -> str:
    return text


# GitHub links ``GH-123`` to issue 123 of the repository (besides ``#123`` and
# ``owner/repo#1``, which the ``#`` rule already breaks).
_GH_REF = re.compile(r"(?i)\bGH(?=-[0-9])")


def escape_gfm(text: str) -> str:
    """GitHub Flavored Markdown: CommonMark's rules, and GitHub's own references broken."""
    return _GH_REF.sub(lambda m: m.group() + _ZWSP, escape_commonmark(text))


# GitLab turns references found in the rendered *text* into links, so a backslash escape
# (gone after rendering) does not stop them: ``~label``, ``%milestone``, ``!12`` (merge
# request), ``&12`` (epic), ``$12`` (snippet), ``*iteration:``, ``[vulnerability:``, each
# also with a ``group/project`` prefix and a quoted name (``~"two words"``). ``#12`` and
# ``@name`` are broken by the CommonMark rule and by ``syncer.render``. A ZERO WIDTH SPACE
# after the sigil leaves nothing for the reference pattern to match.
_GL_REF = re.compile(r"[~%!&$*](?=[A-Za-z0-9_\"'])|\[(?=vulnerability:)")


def escape_glfm(text: str) -> str:
    """GitLab Flavored Markdown: CommonMark's rules, and GitLab's references broken."""
    return _GL_REF.sub(lambda m: m.group() + _ZWSP, escape_commonmark(text))


ESCAPERS: dict[Markup, Callable[[str], str]] = {
    "plain": _plain, "textile": escape_textile, "common_mark": escape_commonmark,
    "gfm": escape_gfm, "glfm": escape_glfm}


def escape(markup: Markup, text: str) -> str:
    """``text`` as it must be written for ``markup`` to show exactly these characters."""
    return ESCAPERS[markup](text)


def strong(markup: Markup, escaped: str) -> str:
    """Our own emphasis around text that is already escaped."""
    if markup == "textile":
        return f"*{escaped}*"
    if markup in ("common_mark", "gfm", "glfm"):
        return f"**{escaped}**"
    return escaped
