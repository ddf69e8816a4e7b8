"""Input readers: Parquet, JSON lines and CSV files (or a folder of them) as Arrow tables, in order.

Each file is opened once: :func:`open_input` reads the first rows for the schema and keeps them for
the run. A JSON line or CSV record that cannot be read does not stop the job: the row is kept (with its
id where one can be read), its unreadable fields are null, and a :class:`Problem` names the file and
line. A row whose text could not be read gets a null result and counts as failed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.redaction import shorten
from gliclass_pipelines.results import STRUCT_LABELS, has_map, has_struct

FORMATS = ("parquet", "jsonl", "csv")
EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
}
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}
SCHEMA_ROWS = 1000  # rows read to infer a JSON lines schema
SCHEMA_BYTES = 16 << 20  # ... or fewer, when they are large
BOM = b"\xef\xbb\xbf"

MAX_RECORD_BYTES = 32 << 20  # a longer JSON line or CSV field is a failed row, read past and never held whole

csv.field_size_limit(MAX_RECORD_BYTES)


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


def detect_format(path: Path) -> str:
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
    import pyarrow as pa

    names = schema.names
    if not names:  # an empty JSONL file: nothing to check
        return
    for option, column in (
        ("--text-column", job.text_column),
        ("--id-column", job.id_column),
        ("--labels-column", job.labels_column),
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
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type) or text_type == pa.null()):
        raise ConfigError(f"--text-column {job.text_column!r} holds {text_type}, not text")


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
        self.files = input_files(path, input_format)
        self.format, self.text_column, self.id_column = input_format, text_column, id_column
        self.total_rows: int | None = None
        if input_format == "parquet":
            self._init_parquet()
        else:
            self._init_text()

    def _init_parquet(self) -> None:
        import pyarrow.parquet as pq

        handles = [pq.ParquetFile(f) for f in self.files]
        self.schema = handles[0].schema_arrow
        self.total_rows = sum(h.metadata.num_rows for h in handles)
        self._handles = handles

    def _init_text(self) -> None:
        self._raw: Any = None
        self._records = itertools.chain.from_iterable(self._file_records(i) for i in range(len(self.files)))
        self._size = sum(f.stat().st_size for f in self.files) or 1
        self._read_before = 0
        self._head = list(_take_head(self._records))
        if self.format == "csv":
            return  # _file_records set the schema from the first header
        self.schema = _infer_schema([row for row, _, _ in self._head if row is not None])

    def _file_records(self, index: int) -> Iterator[tuple[Any, Any, Any]]:
        path = self.files[index]
        with _open(path) as (lines, raw):
            self._raw = raw
            if self.format == "jsonl":
                yield from _jsonl_records(path, lines, self.id_column)
            else:
                header, records = _csv_records(path, lines, self.id_column)
                if index == 0:
                    self.schema = _string_schema(header)
                elif header != self.schema.names:
                    raise ConfigError(f"{path} has other columns than the first input file ({self.files[0]})")
                yield from records
        self._raw = None
        self._read_before += path.stat().st_size

    def chunks(self, size: int) -> Iterator[Chunk]:
        if self.format == "parquet":
            yield from self._parquet_chunks(size)
            return
        records = itertools.chain(self._head, self._records)
        while batch := list(itertools.islice(records, size)):
            done = min((self._read_before + (self._raw.tell() if self._raw else 0)) / self._size, 1.0)
            yield _to_chunk(batch, self.schema, done)
        self._head = []

    def _parquet_chunks(self, size: int) -> Iterator[Chunk]:
        def batches() -> Iterator[Any]:
            for path, handle in zip(self.files, self._handles, strict=True):
                for batch in handle.iter_batches(batch_size=min(size, 65_536)):
                    yield _conform(batch, self.schema, path)

        for table in rechunk(batches(), self.schema, size):
            yield Chunk(table)


def open_input(path: Path, input_format: str, text_column: str, id_column: str | None = None) -> Input:
    return Input(path, input_format, text_column, id_column)


@contextlib.contextmanager
def _open(path: Path) -> Iterator[tuple[Any, Any]]:
    """The file's (decompressed) bytes as a buffered stream, and the raw file (its position)."""
    import pyarrow as pa

    with open(path, "rb") as raw:
        codec = COMPRESSIONS.get(path.suffix.lower())
        stream = pa.CompressedInputStream(raw, codec) if codec else raw
        yield (io.BufferedReader(stream) if codec else stream), raw


def _take_head(records: Iterator[Any]) -> Iterator[Any]:
    size = 0
    for record in itertools.islice(records, SCHEMA_ROWS):
        yield record
        size += sum(len(v) for v in (record[0] or {}).values() if isinstance(v, str))
        if size > SCHEMA_BYTES:
            return


def _too_long() -> str:
    return f"longer than {MAX_RECORD_BYTES:,} bytes; read past, not parsed"


@dataclass(frozen=True)
class CutLine:
    """A line longer than MAX_RECORD_BYTES, read past in pieces and never held whole."""

    quotes: int  # how many '"' it held: CSV needs their parity to stay in step


def bounded_lines(stream: Any) -> Iterator[Any]:
    """The lines of a binary stream (split at \\n) or of a text one (split as it splits them), each at most
    MAX_RECORD_BYTES long (characters, for text); a longer one comes as a CutLine."""
    text = isinstance(stream, io.TextIOBase)
    ends, quote = (("\n", "\r"), '"') if text else (b"\n", b'"')
    while line := stream.readline(MAX_RECORD_BYTES + 1):
        if len(line) <= MAX_RECORD_BYTES or line.endswith(ends):
            yield line
            continue
        quotes = line.count(quote)
        while (rest := stream.readline(1 << 20)) and not rest.endswith(ends):
            quotes += rest.count(quote)
        yield CutLine(quotes + rest.count(quote))


def _jsonl_records(path: Path, lines: Any, id_column: str | None) -> Iterator[tuple[Any, Any]]:
    for number, line in enumerate(bounded_lines(lines), 1):
        if isinstance(line, CutLine):
            yield None, (path, number), Problem(path, number, _too_long())
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


class CsvLines:
    """A binary stream's lines (a UTF-8 BOM dropped), decoded for csv.reader and counted.

    A line longer than MAX_RECORD_BYTES is fed as an empty line (a quote if it held an odd number of
    them, so a quoted field opens or closes as it did), and ``cut`` holds its line number until the
    reader's caller clears it. ``quotes`` counts the quotes fed since the caller last cleared it, so that
    after a field too large for csv the rest of that quoted field can be read past."""

    def __init__(self, stream: Any, errors: str = "surrogateescape") -> None:
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors=errors, newline="")
        self._lines = bounded_lines(text)
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


def _csv_records(path: Path, lines: Any, id_column: str | None) -> tuple[list[str], Iterator[Any]]:
    """RFC 4180 with a header (a UTF-8 BOM is dropped), every field text, an empty field null."""
    feed = CsvLines(lines)
    reader = csv.reader(feed)
    header = next(reader, None)
    if not header:
        raise ConfigError(f"{path} has no header line")
    if _has_surrogate("".join(header)):
        raise ConfigError(f"{path} line 1: the header is not UTF-8")

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
                yield None, (path, line), Problem(path, line, _too_long())
            elif fields:
                yield _csv_row(path, line, header, fields, id_column)

    return header, records()


def _csv_row(path: Path, line: int, header: list[str], fields: list[str], id_column: str | None) -> Any:
    if len(fields) != len(header):
        keep = {id_column: fields[header.index(id_column)]} if id_column in header[: len(fields)] else None
        return (
            keep,
            (path, line),
            Problem(path, line, f"{len(fields)} fields where the header has {len(header)}"),
        )
    row = {name: (value or None) for name, value in zip(header, fields, strict=True)}
    broken = [name for name, value in row.items() if value is not None and _has_surrogate(value)]
    if not broken:
        return row, (path, line), None
    for name in broken:
        row[name] = None
    return (
        row,
        (path, line),
        Problem(path, line, f"not UTF-8 in column(s) {', '.join(broken)}", tuple(broken)),
    )


def _has_surrogate(value: str) -> bool:
    return not value.isascii() and any("\udc80" <= c <= "\udcff" for c in value)


def _string_schema(names: list[str]) -> Any:
    import pyarrow as pa

    return pa.schema([pa.field(name, pa.string()) for name in names])


def _infer_schema(rows: list[dict]) -> Any:
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


def _to_chunk(batch: list[tuple[Any, Any, Any]], schema: Any, done: float) -> Chunk:
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


def _conform(batch: Any, schema: Any, path: Path) -> Any:
    if batch.schema.equals(schema):
        return batch
    try:
        return batch.select(schema.names).cast(schema)
    except (KeyError, ValueError, NotImplementedError) as exc:
        raise ConfigError(f"{path} does not match the schema of the first input file ({exc})") from exc


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
