"""CSV (RFC 4180 with a header): every field text, an empty field null, a bad record a row with a problem."""

from __future__ import annotations

import contextlib
import csv
import io
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.io.readers import lines as limits
from gliclass_pipelines.io.readers.lines import CutLine, bounded_lines, too_long
from gliclass_pipelines.io.readers.records import Problem

csv.field_size_limit(limits.MAX_RECORD_BYTES)


class CsvLines:
    """A binary stream's lines (a UTF-8 BOM dropped), decoded for csv.reader and counted.

    A line longer than MAX_RECORD_BYTES is fed as an empty line (a quote if it held an odd number of
    them, so a quoted field opens or closes as it did), and ``cut`` holds its line number until the
    reader's caller clears it. ``quotes`` counts the quotes fed since the caller last cleared it, so that
    after a field too large for csv the rest of that quoted field can be read past."""

    def __init__(self, stream: Any, errors: str = "surrogateescape", path: Path | None = None) -> None:
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors=errors, newline="")
        self._lines = bounded_lines(text, path)
        self.number = 0
        self.quotes = 0
        self.cut = 0

    def __iter__(self) -> CsvLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.number += 1
        if isinstance(line, CutLine):
            self.cut = self.number
            self.quotes += line.quotes
            return '"' * (line.quotes % 2) + "\n"
        self.quotes += line.count('"')
        return line

    def close_quoted_field(self) -> None:
        """Read past the lines up to the one that closes the open quoted field, if one is open."""
        with contextlib.suppress(StopIteration):
            while self.quotes % 2:
                next(self)
        self.quotes = 0


def csv_records(path: Path, lines: Any, id_column: str | None) -> tuple[list[str], Iterator[Any]]:
    """RFC 4180 with a header (a UTF-8 BOM is dropped), every field text, an empty field null."""
    feed = CsvLines(lines, path=path)
    reader = csv.reader(feed)
    header = next(reader, None)
    if not header:
        raise ConfigError(f"{path} has no header line")
    if has_surrogate("".join(header)):
        raise ConfigError(f"{path} line 1: the header is not UTF-8")
    check_header(path, header)

    def records() -> Iterator[tuple[Any, Any]]:
        start = feed.number + 1
        while True:
            feed.quotes = 0
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if "field limit" in str(exc):
                    feed.close_quoted_field()
                feed.cut = 0
                yield None, (path, start), Problem(path, start, f"not a CSV record ({exc})")
                start = feed.number + 1
                continue
            line, start = start, feed.number + 1
            if feed.cut:
                feed.cut = 0
                yield None, (path, line), Problem(path, line, too_long())
            elif fields:
                yield _csv_row(path, line, header, fields, id_column)

    return header, records()


def check_header(path: Path, header: list[str]) -> None:
    """Refuse blank or repeated column names: each would hide another column's values."""
    blank = [str(i) for i, name in enumerate(header, 1) if not name.strip()]
    counts = Counter(header)
    repeated = [repr(name) for name, n in counts.items() if n > 1 and name.strip()]
    if not blank and not repeated:
        return
    problems = [f"blank name(s) in column(s) {', '.join(blank)}"] if blank else []
    problems += [f"repeated name(s) {', '.join(repeated)}"] if repeated else []
    shown = shorten(",".join(header), 80)
    raise ConfigError(
        f"{shorten(str(path))} line 1: the header has {' and '.join(problems)} ({shown}); "
        "give every column its own name"
    )


def _csv_row(path: Path, line: int, header: list[str], fields: list[str], id_column: str | None) -> Any:
    if len(fields) != len(header):
        keep = {id_column: fields[header.index(id_column)]} if id_column in header[: len(fields)] else None
        return (
            keep,
            (path, line),
            Problem(path, line, f"{len(fields)} fields where the header has {len(header)}"),
        )
    row = {name: (value or None) for name, value in zip(header, fields, strict=True)}
    broken = [name for name, value in row.items() if value is not None and has_surrogate(value)]
    if not broken:
        return row, (path, line), None
    for name in broken:
        row[name] = None
    return (
        row,
        (path, line),
        Problem(path, line, f"not UTF-8 in column(s) {', '.join(broken)}", tuple(broken)),
    )


def has_surrogate(value: str) -> bool:
    return not value.isascii() and any("\udc80" <= c <= "\udcff" for c in value)
