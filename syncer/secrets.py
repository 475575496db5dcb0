"""Configured credentials, masked in every form the engine sends them in, in every error
text that is printed, logged or stored (``scrub``).

A credential rarely comes back the way it was configured. A server or proxy that echoes a
request quotes it as the request carried it, escaped the way its own error format escapes:

* the Re:amaze token travels only inside ``Authorization: Basic base64(login:token)``, so
  an echo shows that base64, never the token (``register_basic_auth``); it is registered
  without its ``=`` padding, which masks padded and unpadded echoes alike;
* the Redmine key travels raw in ``X-Redmine-API-Key``;
* an echoed URL, form body or redirect ``Location`` is percent-encoded (``%2F %2B %3D``,
  upper or lower case; ``+`` for a space in a form), sometimes twice by a proxy;
* an echo inside a JSON body is JSON-escaped: ``/`` as ``\\/`` (PHP, some Rails versions),
  non-ASCII as ``\\uXXXX``; an HTML error page escapes ``& < > " '``;
* our own error text quotes bodies with ``repr``, which doubles those backslashes.

So every registered value is registered with those forms, and each form once more
through each encoding (a JSON echo inside a repr, a double percent-encoding). Credential
headers that were never registered are masked by pattern as well.

The registry is process-wide on purpose: a log line, an exception message or a stored
error does not know which connection it came from.
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading
from collections.abc import Callable
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_LENGTH = 4  # shorter values would blank out ordinary words

# "Authorization: Basic x", and the same header inside a dict/JSON repr
# ("'authorization': 'Bearer x'", '"Authorization":"Basic x"').
AUTH_HEADER_RE = re.compile(
    r"""(?i)(authorization['"]?\s*[:=]\s*['"]?)(basic|bearer|token)(\s+|%20|\+)[^\s'",}&]+""")
KEY_HEADER_RE = re.compile(r"""(?i)(x-redmine-api-key['"]?\s*[:=]\s*['"]?)[^\s'",}&]+""")


def _lower_escapes(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


ENCODERS: tuple[Callable[[str], str], ...] = (
    lambda v: quote(v, safe=""),
    lambda v: quote(v, safe="/"),
    quote_plus,
    lambda v: _lower_escapes(quote(v, safe="")),
    lambda v: json.dumps(v)[1:-1],
    lambda v: json.dumps(v)[1:-1].replace("/", "\\/"),
    lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
    lambda v: repr(v)[1:-1],
    html.escape,
)

_lock = threading.Lock()
_values: set[str] = set()
# Every form of every registered value, longest first: a form inside a longer one must not
# be replaced first and leave the longer one's tail showing. Replaced whole on registration
# so readers in other threads never see it half built.
_forms: tuple[str, ...] = ()


def encodings(value: str) -> set[str]:
    """The value as sent and as it may be echoed back (see the module docstring)."""
    once = {value} | {encode(value) for encode in ENCODERS}
    return once | {encode(form) for form in once for encode in ENCODERS}


def register_secret(value: str) -> None:
    """Mask this value, in every encoding, in all error text from now on."""
    global _forms
    if len(value) < MIN_LENGTH:
        return
    with _lock:
        if value in _values:
            return
        _values.add(value)
        forms = set(_forms) | {f for f in encodings(value) if len(f) >= MIN_LENGTH}
        _forms = tuple(sorted(forms, key=len, reverse=True))


def register_basic_auth(login: str, password: str) -> None:
    """HTTP Basic credentials: the password, and the header value it travels in."""
    register_secret(password)
    userpass = f"{login}:{password}".encode()  # as httpx.BasicAuth builds it
    register_secret(base64.b64encode(userpass).decode().rstrip("="))


def scrub(text: str) -> str:
    """The text with every registered credential, and any credential header value, masked."""
    for form in _forms:
        if form in text:
            text = text.replace(form, MASK)
    text = AUTH_HEADER_RE.sub(rf"\1\2\3{MASK}", text)
    return KEY_HEADER_RE.sub(rf"\1{MASK}", text)
