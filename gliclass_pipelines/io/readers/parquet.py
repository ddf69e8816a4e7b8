"""Parquet: files opened once for their schema and row count, read in batches conformed to one schema.

A file that cannot be opened (a damaged footer) is refused at configuration time, and one whose pages
cannot be read fails the job; both errors name the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.errors import ConfigError, GLiClassPipelinesError
from gliclass_pipelines.io.readers import lines as limits
from gliclass_pipelines.io.readers.records import rechunk

MAX_RATIO = 1000  # uncompressed / compressed bytes of a column chunk past the record cap: a bomb


class UnreadableFile(GLiClassPipelinesError):
    """An input file failed while its rows were read; the message names it."""


def open_parquet(files: list[Path]) -> list[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    handles = []
    for path in files:
        try:
            handles.append(pq.ParquetFile(path))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise ConfigError(f"{_damaged(path, exc)}; remove or replace it") from exc
        check_sizes(path, handles[-1].metadata)
    return handles


def check_sizes(path: Path, metadata: Any) -> None:
    """Refuse a file whose column chunks would decode to records over MAX_RECORD_BYTES, from the sizes in
    its footer (nothing is read): a chunk holding more than the cap per row, or more than the cap at
    over MAX_RATIO times its compressed size (a compression bomb: 1.5 GB of text in 45 KiB)."""
    cap = limits.MAX_RECORD_BYTES
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            size, packed = chunk.total_uncompressed_size, max(chunk.total_compressed_size, 1)
            if size > cap * max(group.num_rows, 1) or (size > cap and size > MAX_RATIO * packed):
                where = f"column {chunk.path_in_schema!r} of row group {g} ({group.num_rows:,} rows)"
                raise ConfigError(
                    f"{shorten(str(path))}: {where} decodes to {size:,} bytes from {packed:,}, past the "
                    f"{cap:,}-byte record cap; not read. Split such records, or compress them under "
                    f"{MAX_RATIO}:1"
                )


def _damaged(path: Path, exc: BaseException) -> str:
    reason = shorten(" ".join(str(exc).split()), 160)
    return f"{shorten(str(path))} is not a readable Parquet file ({type(exc).__name__}: {reason})"


def parquet_tables(files: list[Path], handles: list[Any], schema: Any, size: int) -> Iterator[Any]:
    def batches() -> Iterator[Any]:
        for path, handle in zip(files, handles, strict=True):
            yield from _file_batches(path, handle, schema, min(size, 65_536))

    yield from rechunk(batches(), schema, size)


def _file_batches(path: Path, handle: Any, schema: Any, size: int) -> Iterator[Any]:
    import pyarrow as pa

    batches = handle.iter_batches(batch_size=size)
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise UnreadableFile(_damaged(path, exc)) from exc
        if batch is None:
            return
        yield _conform(batch, schema, path)


def _conform(batch: Any, schema: Any, path: Path) -> Any:
    if batch.schema.equals(schema):
        return batch
    try:
        return batch.select(schema.names).cast(schema)
    except (KeyError, ValueError, NotImplementedError) as exc:
        raise ConfigError(f"{path} does not match the schema of the first input file ({exc})") from exc
