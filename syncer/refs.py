"""What an operator types to name a conversation or an issue, turned into ids.

An issue is ``77``, ``#77`` or its URL on the tracker (``https://redmine.example/issues/77``);
a conversation is its slug or its URL in Re:amaze
(``https://acme.reamaze.com/admin/conversations/crash-on-save``). A URL is checked
against the connector's own ``ticket_url``: an issue URL of another server must not link
the issue with the same number on this one.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit


class RefError(ValueError):
    """Not something that names a conversation or an issue (the CLI's usage error)."""

_NUMBER = re.compile(r"#?(\d+)")


def is_url(ref: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*://", ref.strip(), re.I))


def looks_like_issue(ref: str) -> bool:
    """``77``, ``#77`` or a URL with ``/issues/`` in it (explain's guess at what it got)."""
    ref = ref.strip()
    return bool(_NUMBER.fullmatch(ref)) or (is_url(ref) and "/issues/" in urlsplit(ref).path)


def _from_url(ref: str, prefix: str, what: str) -> str:
    """The id in ``ref``, a URL that must start like ``prefix`` (a ticket URL without its
    id); the scheme, a query, a fragment, a trailing slash and ``.json`` do not matter."""
    got, want = urlsplit(ref.strip()), urlsplit(prefix)
    path = got.path.rstrip("/")
    if path.endswith(".json"):
        path = path[: -len(".json")]
    if got.netloc.lower() != want.netloc.lower() or not path.startswith(want.path) \
            or "/" in path[len(want.path):] or path == want.path.rstrip("/"):
        raise RefError(f"{ref!r} is not a {what} URL here (expected {prefix}…)")
    return unquote(path[len(want.path):])


def issue_id(ref: str, url_prefix: str | None) -> str:
    """``77``, ``#77`` or an issue URL (``url_prefix``: the tracker's issue URL without the
    id; None: any URL whose path ends in ``/issues/77``) to the issue id."""
    ref = ref.strip()
    number = _NUMBER.fullmatch(ref)
    if number:
        return number.group(1)
    if is_url(ref):
        if url_prefix is not None:
            found = _from_url(ref, url_prefix, "tracker issue")
        else:
            match = re.search(r"/issues/([^/?#]+?)(?:\.json)?/?$", urlsplit(ref).path)
            found = match.group(1) if match else ""
        if found.isascii() and found.isdigit():
            return found
    raise RefError(f"{ref!r} is not an issue: give its number (77 or #77) or its URL"
                   + (f" ({url_prefix}77)" if url_prefix else ""))


def conversation_id(ref: str, url_prefix: str | None) -> str:
    """A slug, or a conversation URL (``url_prefix``: a conversation URL without the slug;
    None: any URL whose path has ``/conversations/SLUG``)."""
    ref = ref.strip()
    if not is_url(ref):
        if not ref or "/" in ref:
            raise RefError(f"{ref!r} is not a conversation slug or URL")
        return ref
    if url_prefix is not None:
        return _from_url(ref, url_prefix, "Re:amaze conversation")
    match = re.search(r"/conversations/([^/?#]+)/?$", urlsplit(ref).path)
    if match is None:
        raise RefError(f"{ref!r} is not a Re:amaze conversation URL "
                       "(…/admin/conversations/SLUG)")
    return unquote(match.group(1))
