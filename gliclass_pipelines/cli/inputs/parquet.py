"""Parquet: files opened once for their schema and row count, read in batches conformed to one schema.

A file that cannot be opened (a damaged footer) is refused at configuration time, and one whose pages
cannot be read fails the job; both errors name the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gliclass_pipelines.cli.inputs.records import rechunk
from gliclass_pipelines.errors import ConfigError, GLiClassPipelinesError
from gliclass_pipelines.redaction import shorten


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
    return handles


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
