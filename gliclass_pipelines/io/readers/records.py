"""Rows as Arrow tables: a record's problems, schema inference, chunks, and values that fit their column."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.redaction import shorten


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


def infer_schema(rows: list[dict], id_column: str | None = None) -> Any:
    """Column types from the first rows, in first-seen order; a column null throughout is text, and so is
    an id column whose values are of several types (see :func:`ids_as_text`)."""
    import pyarrow as pa

    names = list(dict.fromkeys(name for row in rows for name in row))
    fields = []
    for name in names:
        values = [row.get(name) for row in rows]
        if name == id_column and len({type(v) for v in values if v is not None}) > 1:
            kind = pa.string()  # 7 and "x-7": both kept, as text
        else:
            try:
                kind = pa.array(values).type
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                kind = pa.string()  # mixed types: rows whose value is not text report it
        fields.append(pa.field(name, pa.string() if pa.types.is_null(kind) else kind))
    return pa.schema(fields)


def ids_as_text(row: dict, schema: Any, id_column: str | None) -> dict:
    """The row with a number or boolean id written as JSON text ("7", as Spark reads it) when the id
    column is text: an id is never lost for being of another type than the others."""
    import pyarrow as pa

    value = row.get(id_column) if id_column is not None else None
    text = isinstance(value, int | float) and pa.types.is_string(schema.field(id_column).type)
    return {**row, id_column: json.dumps(value)} if text else row


def to_chunk(batch: list[tuple[Any, Any, Any]], schema: Any, done: float, id_column: str | None) -> Chunk:
    import pyarrow as pa

    rows = [ids_as_text(row or {}, schema, id_column) for row, _, _ in batch]
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
