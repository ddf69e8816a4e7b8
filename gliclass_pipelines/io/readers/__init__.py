"""Input readers: Parquet, JSON lines and CSV files (or a folder of them) as Arrow tables, in order.

Each file is opened once: :func:`open_input` reads the first rows for the schema and keeps them for
the run. A JSON line or CSV record that cannot be read does not stop the job: the row is kept (with its
id where one can be read), its unreadable fields are null, and a :class:`Problem` names the file and
line. A row whose text could not be read gets a null result and counts as failed. One module per
format (jsonl, csvfile, parquet) over the shared line reader (lines) and Arrow rows (records).
"""

from __future__ import annotations

import itertools
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.core.results import STRUCT_LABELS, has_map, has_struct
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.io.readers.csvfile import CsvLines, csv_records
from gliclass_pipelines.io.readers.jsonl import id_of_broken_line, jsonl_records
from gliclass_pipelines.io.readers.lines import COMPRESSIONS, CutLine, bounded_lines, open_stream
from gliclass_pipelines.io.readers.parquet import open_parquet, parquet_tables
from gliclass_pipelines.io.readers.records import (
    Chunk,
    Problem,
    ids_as_text,
    infer_schema,
    misfits,
    rechunk,
    string_schema,
    to_chunk,
)

__all__ = [
    "COMPRESSIONS",
    "FORMATS",
    "Chunk",
    "CsvLines",
    "CutLine",
    "Input",
    "Problem",
    "bounded_lines",
    "check_columns",
    "check_not_a_device",
    "detect_format",
    "id_of_broken_line",
    "ids_as_text",
    "input_files",
    "misfits",
    "open_input",
    "rechunk",
]

FORMATS = ("parquet", "jsonl", "csv", "delta")
EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
}
SCHEMA_ROWS = 1000  # rows read to infer a JSON lines schema
SCHEMA_BYTES = 16 << 20  # ... or fewer, when they are large


def detect_format(path: Path) -> str:
    if (path / "_delta_log").is_dir():
        return "delta"
    files = input_files(path, None) if path.is_dir() else [path]
    found = {_format_of(f) for f in files} - {None}
    if len(found) != 1:
        where = f"the files in {path}" if path.is_dir() else str(path)
        raise ConfigError(
            f"cannot tell the format of {where} from the extension; pass --input-format {'|'.join(FORMATS)}"
        )
    return found.pop()


def _format_of(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes.pop()
    return EXTENSIONS.get(suffixes[-1]) if suffixes else None


def input_files(path: Path, input_format: str | None) -> list[Path]:
    """The file itself, or a directory's data files in name order (skipping _ and . names)."""
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path)))
    if input_format is not None:
        matching = [p for p in files if _format_of(p) == input_format]
        files = matching or files
    if not files:
        raise ConfigError(f"input directory {path} holds no data files")
    return files


def check_not_a_device(path: Path) -> None:
    """A device (/dev/zero, a disk) never ends; reading one as input would fill memory or never stop."""
    mode = path.stat().st_mode
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        raise ConfigError(f"input {shorten(str(path))} is a device, not a file")


def _hidden(relative: Path) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.parts)


def check_columns(job: Any, schema: Any) -> None:
    names = schema.names
    if not names:  # an empty JSONL file: nothing to check
        return
    for option, column in (
        ("--text-column", job.text_column),
        ("--id-column", job.id_column),
        ("--labels-column", job.labels_column),
        ("--prompt-column", job.prompt_column),
        ("--threshold-column", job.threshold_column),
    ):
        if column is not None and column not in names:
            raise ConfigError(
                f"{option} {column!r} is not a column of {job.input}; columns: {shorten(', '.join(names))}"
            )
    if job.result_column in names:
        raise ConfigError(f"the input already has a column {job.result_column!r}; choose --result-column")
    if job.labels_column is not None:
        _check_labels_type(job, schema.field(job.labels_column).type)
    text_type = schema.field(job.text_column).type
    if not is_text_type(text_type):
        raise ConfigError(f"--text-column {job.text_column!r} holds {text_type}, not text")
    if job.prompt_column is not None and not is_text_type(schema.field(job.prompt_column).type):
        kind = schema.field(job.prompt_column).type
        raise ConfigError(f"--prompt-column {job.prompt_column!r} holds {kind}, not text")
    if job.threshold_column is not None and not is_number_type(schema.field(job.threshold_column).type):
        kind = schema.field(job.threshold_column).type
        raise ConfigError(f"--threshold-column {job.threshold_column!r} holds {kind}, not numbers")


def is_number_type(kind: Any) -> bool:
    """Integers or floats (a column null throughout counts too); a decimal must be cast first."""
    import pyarrow as pa

    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)


def is_text_type(kind: Any) -> bool:
    """Text in any of Arrow's layouts: string, large_string, string_view, or dictionary-encoded text (a
    pandas Categorical); a column null throughout counts too."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_string_view(kind)
        or pa.types.is_null(kind)
    )


def _check_labels_type(job: Any, labels: Any) -> None:
    """Refuse a labels column the runner cannot read as each row's own labels."""
    if job.runner == "beam" and has_map(labels):
        raise ConfigError(
            f"--labels-column {job.labels_column!r} holds maps (a hierarchy per row), which Beam's Parquet "
            "reader turns into lists of pairs; use --runner local or spark for it"
        )
    if has_struct(labels) and not (job.runner == "beam" and job.input_format == "jsonl"):
        raise ConfigError(
            f"--labels-column {job.labels_column!r} {STRUCT_LABELS}. For a hierarchy per row use --runner "
            "beam on JSONL (which reads each object as it is) or a Parquet map<string,array<string>> column"
        )


class Input:
    """An opened input: its schema now, its rows later (from the same open files)."""

    def __init__(self, path: Path, input_format: str, text_column: str, id_column: str | None) -> None:
        table = input_format == "delta"
        if table:
            from gliclass_pipelines.io.tables.delta import input_files as table_files

            self.files, input_format = table_files(path), "parquet"
        else:
            self.files = input_files(path, input_format)
        self.format, self.text_column, self.id_column = input_format, text_column, id_column
        self.total_rows: int | None = None
        if input_format == "parquet":
            self._handles = open_parquet(self.files)
            self.schema = self._handles[0].schema_arrow
            if table:
                from gliclass_pipelines.io.tables.delta import plain_schema

                self.schema = plain_schema(self.schema)
            self.total_rows = sum(h.metadata.num_rows for h in self._handles)
        else:
            self._init_text()

    def _init_text(self) -> None:
        self._raw: Any = None
        self._records = itertools.chain.from_iterable(self._file_records(i) for i in range(len(self.files)))
        self._size = sum(f.stat().st_size for f in self.files) or 1
        self._read_before = 0
        self._head = list(_take_head(self._records))
        if self.format == "csv":
            return  # _file_records set the schema from the first header
        self.schema = infer_schema([row for row, _, _ in self._head if row is not None], self.id_column)

    def _file_records(self, index: int) -> Iterator[tuple[Any, Any, Any]]:
        path = self.files[index]
        with open_stream(path) as (lines, raw):
            self._raw = raw
            if self.format == "jsonl":
                yield from jsonl_records(path, lines, self.id_column)
            else:
                header, records = csv_records(path, lines, self.id_column)
                if index == 0:
                    self.schema = string_schema(header)
                elif header != self.schema.names:
                    raise ConfigError(f"{path} has other columns than the first input file ({self.files[0]})")
                yield from records
        self._raw = None
        self._read_before += path.stat().st_size

    def chunks(self, size: int) -> Iterator[Chunk]:
        if self.format == "parquet":
            for table in parquet_tables(self.files, self._handles, self.schema, size):
                yield Chunk(table)
            return
        records = itertools.chain(self._head, self._records)
        while batch := list(itertools.islice(records, size)):
            done = min((self._read_before + (self._raw.tell() if self._raw else 0)) / self._size, 1.0)
            yield to_chunk(batch, self.schema, done, self.id_column)
        self._head = []


def open_input(path: Path, input_format: str, text_column: str, id_column: str | None = None) -> Input:
    return Input(path, input_format, text_column, id_column)


def _take_head(records: Iterator[Any]) -> Iterator[Any]:
    size = 0
    for record in itertools.islice(records, SCHEMA_ROWS):
        yield record
        size += sum(len(v) for v in (record[0] or {}).values() if isinstance(v, str))
        if size > SCHEMA_BYTES:
            return
