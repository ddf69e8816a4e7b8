"""JSON lines: each line an object; a line that cannot be read keeps its row (and its id, when found)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gliclass_pipelines.io.readers.lines import CutLine, bounded_lines, too_long
from gliclass_pipelines.io.readers.records import Problem

BOM = b"\xef\xbb\xbf"
MAX_DEPTH = 64  # nesting of a JSON line's values; deeper values are nulled (Python's parser recurses)
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")  # the escape of a surrogate: most are halves of a pair


def jsonl_records(path: Path, lines: Any, id_column: str | None) -> Iterator[tuple[Any, Any, Any]]:
    for number, line in enumerate(bounded_lines(lines, path), 1):
        if isinstance(line, CutLine):
            yield None, (path, number), Problem(path, number, too_long())
            continue
        if number == 1 and line.startswith(BOM):
            line = line[len(BOM) :]
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            reason = f"not UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})"
            yield id_of_broken_line(line, id_column), (path, number), Problem(path, number, reason)
            continue
        value, reason, columns = parse_line(text)
        if value is None:
            yield id_of_broken_line(line, id_column), (path, number), Problem(path, number, reason)
        else:
            yield value, (path, number), Problem(path, number, reason, columns) if reason else None


def parse_line(text: str) -> tuple[dict | None, str | None, tuple[str, ...] | None]:
    """A JSON line as (object, None, None); (None, why, None) when it is not an object; or (object with
    the columns it cannot keep nulled, why, those columns): a lone surrogate (an emoji cut in half, which
    no UTF-8 writer can write) or values nested deeper than MAX_DEPTH."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at column {exc.colno})", None
    except RecursionError:
        return None, f"nested deeper than {MAX_DEPTH} levels; not parsed", None
    if not isinstance(value, dict):
        return None, f"a JSON {type(value).__name__}, not an object", None
    deep = text.count("[") + text.count("{") > MAX_DEPTH
    halves = _SURROGATE.search(text) is not None
    if not (deep or halves):
        return value, None, None
    bad = {name: why for name, item in value.items() if (why := _unkeepable(item, deep, halves))}
    if not bad:
        return value, None, None
    reason = "; ".join(f"{name!r} {why}" for name, why in bad.items())
    return {**value, **dict.fromkeys(bad)}, f"{reason}: set to null", tuple(bad)


def _unkeepable(item: Any, deep: bool, halves: bool) -> str | None:
    stack = [(item, 1)]
    while stack:
        value, depth = stack.pop()
        if deep and depth > MAX_DEPTH:
            return f"is nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in [*value.keys(), *value.values()])
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif halves and isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                return f"holds a lone surrogate escape (\\u{ord(value[exc.start]):04x})"
    return None


def id_of_broken_line(line: bytes, id_column: str | None) -> dict | None:
    """The id of a broken JSON line, when a plain `"id": value` can be found in it."""
    if id_column is None:
        return None
    key = re.escape(json.dumps(id_column))
    found = re.search(key.encode() + rb'\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+)', line)
    with contextlib.suppress(ValueError):
        return {id_column: json.loads(found.group(1))} if found else None
    return None
