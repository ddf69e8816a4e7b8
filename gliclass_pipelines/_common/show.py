"""Echo user input in error messages: cut short, and listed readably."""

from __future__ import annotations

from collections.abc import Iterable

_SHOW_MAX = 80
_LIST_MAX = 10


def show(value: object) -> str:
    """repr() of a value, cut short so an error message stays readable."""
    text = repr(value)
    if len(text) > _SHOW_MAX:
        text = text[: _SHOW_MAX - 3] + "..."
    return text


def show_list(values: Iterable[object]) -> str:
    values = list(values)
    shown = ", ".join(show(v) for v in values[:_LIST_MAX])
    if len(values) > _LIST_MAX:
        shown += f", ... ({len(values) - _LIST_MAX} more)"
    return shown


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    import difflib  # only on the error path

    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(show(c) for c in close)}?" if close else ""
