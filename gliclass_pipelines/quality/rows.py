"""Labelled training rows: read from a file or an iterable, and checked before any training starts."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.redaction import shorten
from gliclass_pipelines.taxonomy import Taxonomy

MAX_ROWS = 1_000_000

Row = tuple[str, tuple[str, ...]]


def read_rows(
    source: str | os.PathLike[str] | Iterable[Any],
    *,
    text_column: str = "text",
    labels_column: str = "labels",
    delimiter: str = ",",
    max_rows: int = MAX_ROWS,
) -> list[Row]:
    """(text, labels) rows from a Parquet/JSONL/CSV file, or from an iterable of (text, labels) pairs.

    Labels are a list of str or delimited text. At most ``max_rows`` rows are read (more is an error).
    """
    from gliclass_pipelines.quality.metrics import parse_gold

    if isinstance(source, str | os.PathLike):
        records = _read_file(os.fspath(source), text_column, labels_column)
    else:
        records = source
    rows: list[Row] = []
    for record in records:
        if len(rows) >= max_rows:
            raise ConfigError(f"more than {max_rows} training rows; sample them first")
        if isinstance(record, dict):
            text, labels = record.get(text_column), record.get(labels_column)
        else:
            text, labels = record
        rows.append((text, parse_gold(labels, delimiter)))
    return rows


def _read_file(path: str, text_column: str, labels_column: str) -> Iterable[dict]:
    if not os.path.isfile(path):
        raise ConfigError(f"training data {shorten(path)!r} is not a file")
    extension = os.path.splitext(path)[1].lower()
    if extension == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=[text_column, labels_column])
        return table.to_pylist()
    if extension in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    if extension == ".csv":
        import csv

        with open(path, encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    raise ConfigError(f"training data must be .parquet, .jsonl or .csv, got {shorten(path)!r}")


def check_rows(rows: Sequence[Row], taxonomy: Taxonomy, min_rows: int) -> None:
    """ConfigError for too few rows, an empty text, or a gold label outside the taxonomy."""
    if len(rows) < min_rows:
        raise ConfigError(f"{len(rows)} training rows; fine-tuning needs at least {min_rows}")
    known = set(taxonomy.labels)
    for i, (text, labels) in enumerate(rows):
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"training row {i} has an empty or missing text; remove it")
        unknown = [label for label in labels if label not in known]
        if unknown:
            raise ConfigError(
                f"training row {i} has gold label {shorten(unknown[0])!r}, which is not in the taxonomy; "
                "add it to the taxonomy or fix the row"
            )
    if not any(labels for _, labels in rows):
        raise ConfigError("no training row has a gold label")
