"""Hide secrets that arrive inside URIs, and cut echoed input to a readable size.

Everything that prints, logs, reprs or records a model source (or any user-given URI) passes it
through :func:`redact` first: ``https://user:token@host/m?sig=abc`` becomes ``https://***@host/m?***``.
Hub ids (``org/name@rev``) and paths have no scheme and are left as they are.
"""

from __future__ import annotations

import re

MAX_ECHO = 200  # characters of user input repeated in an error message

# A scheme starts a word and is short, so finding every one stays linear on long input.
_SCHEME = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://")
_WORD = re.compile(r"[^\s'\"]+")
_SECRET_PARTS = re.compile(r"[&;]")


def redact(text: object, *, source: object = None) -> str:
    """``text`` as a string with the userinfo and query/fragment of every URI in it replaced by ***.

    The userinfo runs to the last ``@`` before the host's end (a password may hold ``@``); the query
    or fragment runs to the end of the word. With ``source`` (a URI the text may be about), the secrets
    of that URI are also removed where the text repeats them without their URI, as a library's error
    message may (``bucket 'user:pw@b' is invalid``).
    """
    value = str(text)
    if source is not None:
        for secret in _secrets_of(str(source)):
            value = value.replace(secret, "***")
    if "://" not in value:
        return value
    return _WORD.sub(lambda word: _redact_word(word.group(0)), value)


def _redact_word(word: str) -> str:
    first = _SCHEME.search(word) if "://" in word else None
    if first is None:
        return word
    query = _find_any(word, "?#", first.end())
    head, tail = (word, "") if query < 0 else (word[:query], "?***")
    out, done = [], 0
    for scheme in _SCHEME.finditer(head):
        if scheme.start() < done:
            continue
        at = _userinfo_end(head, scheme.end())
        out.append(head[done : scheme.end()] + ("***@" if at >= 0 else ""))
        done = at + 1 if at >= 0 else scheme.end()
    return "".join(out) + head[done:] + tail


def _find_any(text: str, chars: str, start: int) -> int:
    """Index of the first of ``chars`` at or after ``start``, or -1 (each search stops at the last hit)."""
    end = len(text)
    for char in chars:
        found = text.find(char, start, end)
        end = found if found >= 0 else end
    return end if end < len(text) else -1


def _userinfo_end(text: str, start: int) -> int:
    """Index of the "@" that ends the userinfo of an authority starting at ``start``, or -1."""
    end = _find_any(text, "/?#", start)
    return text.rfind("@", start, len(text) if end < 0 else end)


def _secrets_of(uri: str) -> list[str]:
    """The userinfo and query of ``uri``, whole and in pieces (user, password, parameter values)."""
    scheme = _SCHEME.search(uri)
    if scheme is None:
        return []
    found = []
    at = _userinfo_end(uri, scheme.end())
    if at >= 0:
        userinfo = uri[scheme.end() : at]
        found += [userinfo, *userinfo.split(":")]
    query = _find_any(uri, "?#", scheme.end())
    if query >= 0:
        rest = uri[query + 1 :]
        found += [rest, *(part.partition("=")[2] for part in _SECRET_PARTS.split(rest))]
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def shorten(text: object, limit: int = MAX_ECHO, *, source: object = None) -> str:
    """Redacted ``text``, cut to ``limit`` characters with the number of characters left out."""
    value = redact(text, source=source)
    if len(value) <= limit:
        return value
    return f"{value[:limit]}... ({len(value) - limit:,} more characters)"
