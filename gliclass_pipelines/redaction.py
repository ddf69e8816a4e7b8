"""Hide secrets that arrive inside URIs, and cut echoed input to a readable size.

Everything that prints, logs, reprs or records a model source (or any user-given URI) passes it
through :func:`redact` first: ``https://user:token@host/m?sig=abc`` becomes ``https://***@host/m?***``.
"""

from __future__ import annotations

import re

MAX_ECHO = 200  # characters of user input repeated in an error message

_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"]*@")
_QUERY = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s'\"?#]*)[?#][^\s'\"]*")


def redact(text: object) -> str:
    """``text`` as a string with the userinfo and query/fragment of every URI in it replaced by ***."""
    value = str(text)
    value = _USERINFO.sub(r"\1***@", value)
    return _QUERY.sub(r"\1?***", value)


def shorten(text: object, limit: int = MAX_ECHO) -> str:
    """Redacted ``text``, cut to ``limit`` characters with the number of characters left out."""
    value = redact(text)
    if len(value) <= limit:
        return value
    return f"{value[:limit]}... ({len(value) - limit:,} more characters)"
