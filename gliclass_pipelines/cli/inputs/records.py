"""Rows as Arrow tables: a record's problems, schema inference, chunks, and values that fit their column."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gliclass_pipelines.redaction import shorten


@dataclass(frozen=True)
class Problem:
    """Why a record could not be read in full, and where it is."""

    path: Path
    line: int
    reason: str
    columns: tuple[str, ...] | None = None  # the columns set to null; None: the whole record

    def __str__(self) -> str:
        return f"{self.path} line {self.line}: {self.reason}"

    def loses(self, column: str) -> bool:
        return self.columns is None or column in self.columns


@dataclass
class Chunk:
    table: Any
    problems: dict[int, Problem] = field(default_factory=dict)  # row index in the chunk -> problem
    done: float | None = None  # share of the input read so far, when known


def string_schema(names: list[str]) -> Any:
    import pyarrow as pa

    return pa.schema([pa.field(name, pa.string()) for name in names])


def infer_schema(rows: list[dict]) -> Any:
    """Column types from the first rows, in first-seen order; a column null throughout is text."""
    import pyarrow as pa

    names = list(dict.fromkeys(name for row in rows for name in row))
    fields = []
    for name in names:
        try:
            kind = pa.array([row.get(name) for row in rows]).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            kind = pa.string()  # mixed types: rows whose value is not text report it
        fields.append(pa.field(name, pa.string() if pa.types.is_null(kind) else kind))
    return pa.schema(fields)


def to_chunk(batch: list[tuple[Any, Any, Any]], schema: Any, done: float) -> Chunk:
    import pyarrow as pa

    rows = [row or {} for row, _, _ in batch]
    problems = {i: problem for i, (_, _, problem) in enumerate(batch) if problem is not None}
    try:
        table = pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        rows = [_conform_row(i, row, schema, batch[i][1], problems) for i, row in enumerate(rows)]
        table = pa.Table.from_pylist(rows, schema=schema)
    return Chunk(table, problems, done)


def misfits(row: dict, schema: Any) -> list[str]:
    """The columns whose value in ``row`` does not fit the column's Arrow type."""
    import pyarrow as pa

    bad = []
    for column in schema:
        try:
            pa.array([row.get(column.name)], type=column.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            bad.append(column.name)
    return bad


def _conform_row(i: int, row: dict, schema: Any, where: tuple[Path, int], problems: dict) -> dict:
    """The row with each value that does not fit its column's type set to null, and why."""
    bad = misfits(row, schema)
    if not bad:
        return row
    shown = ", ".join(
        f"{name!r} holds {shorten(repr(row[name]), 40)}, not {schema.field(name).type}" for name in bad
    )
    problems[i] = Problem(*where, shown, tuple(bad))
    return {**row, **dict.fromkeys(bad)}


def rechunk(batches: Iterator[Any], schema: Any, size: int) -> Iterator[Any]:
    import pyarrow as pa

    pending, count = [], 0
    for batch in batches:
        while batch.num_rows:
            take = min(size - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            batch, count = batch.slice(take), count + take
            if count == size:
                yield pa.Table.from_batches(pending, schema=schema)
                pending, count = [], 0
    if count:
        yield pa.Table.from_batches(pending, schema=schema)
