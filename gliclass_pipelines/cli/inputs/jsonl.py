"""JSON lines: each line an object; a line that cannot be read keeps its row (and its id, when found)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gliclass_pipelines.cli.inputs.lines import CutLine, bounded_lines, too_long
from gliclass_pipelines.cli.inputs.records import Problem

BOM = b"\xef\xbb\xbf"


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
            value = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            reason = f"not UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})"
        except json.JSONDecodeError as exc:
            reason = f"not valid JSON ({exc.msg} at column {exc.colno})"
        else:
            if isinstance(value, dict):
                yield value, (path, number), None
                continue
            reason = f"a JSON {type(value).__name__}, not an object"
        yield id_of_broken_line(line, id_column), (path, number), Problem(path, number, reason)


def id_of_broken_line(line: bytes, id_column: str | None) -> dict | None:
    """The id of a broken JSON line, when a plain `"id": value` can be found in it."""
    if id_column is None:
        return None
    key = re.escape(json.dumps(id_column))
    found = re.search(key.encode() + rb'\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+)', line)
    with contextlib.suppress(ValueError):
        return {id_column: json.loads(found.group(1))} if found else None
    return None
