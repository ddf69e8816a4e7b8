"""Labelled training rows: read from a file or an iterable, and checked before any training starts."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.io.readers import CsvLines, CutLine, bounded_lines
from gliclass_pipelines.io.readers import lines as limits
from gliclass_pipelines.taxonomy.taxonomy import Taxonomy

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
    """(text, labels) rows from a Parquet/JSONL/CSV file, a Spark DataFrame, or (text, labels) pairs.

    Labels are a list of str or delimited text. At most ``max_rows`` rows are read (more is an error):
    files are read as a stream, and a DataFrame sends at most ``max_rows + 1`` rows to the driver.
    """
    from gliclass_pipelines.quality.metrics import parse_gold

    if isinstance(source, str | os.PathLike):
        records = _read_file(os.fspath(source), text_column, labels_column)
    elif _is_dataframe(source):
        records = _read_dataframe(source, text_column, labels_column, max_rows)
    else:
        records = source
    rows: list[Row] = []
    try:
        for record in records:
            if len(rows) >= max_rows:
                raise ConfigError(f"more than {max_rows:,} training rows; sample them first (max_rows)")
            if isinstance(record, dict):
                text, labels = record.get(text_column), record.get(labels_column)
            else:
                text, labels = record
            rows.append((text, parse_gold(labels, delimiter)))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"training data is not UTF-8 text ({exc.reason} after row {len(rows)})") from None
    return rows


def _is_dataframe(source: Any) -> bool:
    return all(hasattr(source, name) for name in ("toLocalIterator", "select", "limit", "columns"))


def _read_dataframe(df: Any, text_column: str, labels_column: str, max_rows: int) -> Iterator[dict]:
    missing = [c for c in (text_column, labels_column) if c not in df.columns]
    if missing:
        raise ConfigError(f"the DataFrame has no column {missing[0]!r}; it has {', '.join(df.columns)}")
    sample = df.select(text_column, labels_column).limit(max_rows + 1)
    return (row.asDict() for row in sample.toLocalIterator())


def _read_file(path: str, text_column: str, labels_column: str) -> Iterator[dict]:
    if not os.path.isfile(path):
        raise ConfigError(f"training data {shorten(path)!r} is not a file")
    extension = os.path.splitext(path)[1].lower()
    if extension == ".parquet":
        return _read_parquet(path, [text_column, labels_column])
    if extension in (".jsonl", ".json"):
        return _read_jsonl(path)
    if extension == ".csv":
        return _read_csv(path)
    raise ConfigError(f"training data must be .parquet, .jsonl or .csv, got {shorten(path)!r}")


def _read_parquet(path: str, columns: list[str]) -> Iterator[dict]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096, columns=columns):
        yield from batch.to_pylist()


def _read_jsonl(path: str) -> Iterator[dict]:
    with open(path, "rb") as handle:
        for number, line in enumerate(bounded_lines(handle), 1):
            if isinstance(line, CutLine):
                raise _too_long(path, number)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{shorten(path)} line {number} is not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ConfigError(f"{shorten(path)} line {number} is not a JSON object")
            yield record


def _read_csv(path: str) -> Iterator[dict]:
    import csv

    with open(path, "rb") as handle:
        feed = CsvLines(handle, errors="strict")
        try:
            for record in csv.DictReader(feed):
                if feed.cut:
                    raise _too_long(path, feed.cut)
                yield record
        except csv.Error as exc:
            raise ConfigError(f"{shorten(path)} line {feed.number} is not a CSV record ({exc})") from None
        if feed.cut:  # csv skips the empty line a cut line is fed as, so a cut last line yields no record
            raise _too_long(path, feed.cut)


def _too_long(path: str, line: int) -> ConfigError:
    return ConfigError(f"{shorten(path)} line {line} is longer than {limits.MAX_RECORD_BYTES} bytes")


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
