"""Input readers: Parquet, JSON lines and CSV files (or a directory of them) as Arrow batches, in order."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gliclass_pipelines.errors import ConfigError

FORMATS = ("parquet", "jsonl", "csv")
EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
}
COMPRESSIONS = (".gz", ".bz2", ".zst", ".lz4")


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


def _hidden(relative: Path) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.parts)


def input_schema(path: Path, input_format: str) -> Any:
    return _READERS[input_format](input_files(path, input_format)[0], 1 << 20)[0]


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
                f"{option} {column!r} is not a column of {job.input}; columns: {', '.join(names)}"
            )
    if job.result_column in names:
        raise ConfigError(f"the input already has a column {job.result_column!r}; choose --result-column")
    text_type = schema.field(job.text_column).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type) or text_type == pa.null()):
        raise ConfigError(f"--text-column {job.text_column!r} holds {text_type}, not text")


def read_chunks(job: Any) -> tuple[Any, Iterator[Any]]:
    """The input's schema and an iterator of tables of ``job.chunk_rows`` rows, in input order."""
    files = input_files(job.input, job.input_format)
    schema, _ = _READERS[job.input_format](files[0], 1 << 20)

    def batches() -> Iterator[Any]:
        for path in files:
            _, reader = _READERS[job.input_format](path, 1 << 20)
            for batch in reader:
                yield _conform(batch, schema, path)

    return schema, rechunk(batches(), schema, job.chunk_rows)


def count_rows(job: Any) -> int | None:
    """The number of input rows, for the progress bar's total and ETA."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = input_files(job.input, job.input_format)
    if job.input_format == "parquet":
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    total = 0
    for path in files:
        with pa.input_stream(str(path), compression="detect") as stream:
            if job.input_format == "csv":  # records, not lines: quoted values may hold newlines
                text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
                total += max(sum(1 for record in csv.reader(text) if record) - 1, 0)
            else:
                total += sum(1 for line in io.BufferedReader(stream) if line.strip())
    return total


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


def _read_parquet(path: Path, batch_rows: int) -> tuple[Any, Iterator[Any]]:
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(path)
    return handle.schema_arrow, handle.iter_batches(batch_size=min(batch_rows, 65_536))


def _read_jsonl(path: Path, block_size: int) -> tuple[Any, Iterator[Any]]:
    import pyarrow as pa
    import pyarrow.json as pj

    def open_(schema: Any = None) -> Any:
        options = pj.ParseOptions(explicit_schema=schema) if schema is not None else pj.ParseOptions()
        stream = pa.input_stream(str(path), compression="detect")
        return pj.open_json(stream, read_options=pj.ReadOptions(block_size=block_size), parse_options=options)

    try:
        reader = open_()
    except pa.ArrowInvalid as exc:
        if "Empty JSON" in str(exc):
            return pa.schema([]), iter(())
        raise ConfigError(f"{path} is not valid JSON lines: {exc}") from exc
    # Read as text what Arrow guesses as timestamps (Spark and json.loads keep strings), and columns
    # that are null throughout the first block (rather than fail on their first value).
    guessed = [f.name for f in reader.schema if pa.types.is_null(f.type) or pa.types.is_timestamp(f.type)]
    if not guessed:
        return reader.schema, iter(reader)
    schema = pa.schema([f.with_type(pa.string()) if f.name in guessed else f for f in reader.schema])
    return schema, iter(open_(schema))


def _read_csv(path: Path, block_size: int) -> tuple[Any, Iterator[Any]]:
    """Every column as text, like Spark's CSV reader with a header, so ids keep their leading zeros."""
    import pyarrow as pa
    import pyarrow.csv as pc

    with pa.input_stream(str(path), compression="detect") as stream:
        header = next(csv.reader(io.TextIOWrapper(stream, encoding="utf-8", newline="")), None)
    if not header:
        raise ConfigError(f"{path} has no header line")
    convert = pc.ConvertOptions(column_types={name: pa.string() for name in header})
    reader = pc.open_csv(
        pa.input_stream(str(path), compression="detect"),
        read_options=pc.ReadOptions(block_size=block_size),
        parse_options=pc.ParseOptions(newlines_in_values=True),
        convert_options=convert,
    )
    return reader.schema, iter(reader)


_READERS: dict[str, Callable[[Path, int], tuple[Any, Iterator[Any]]]] = {
    "parquet": _read_parquet,
    "jsonl": _read_jsonl,
    "csv": _read_csv,
}
