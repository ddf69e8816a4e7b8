"""Parquet: files opened once for their schema and row count, read in batches conformed to one schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gliclass_pipelines.cli.inputs.records import rechunk
from gliclass_pipelines.errors import ConfigError


def open_parquet(files: list[Path]) -> list[Any]:
    import pyarrow.parquet as pq

    return [pq.ParquetFile(f) for f in files]


def parquet_tables(files: list[Path], handles: list[Any], schema: Any, size: int) -> Iterator[Any]:
    def batches() -> Iterator[Any]:
        for path, handle in zip(files, handles, strict=True):
            for batch in handle.iter_batches(batch_size=min(size, 65_536)):
                yield _conform(batch, schema, path)

    yield from rechunk(batches(), schema, size)


def _conform(batch: Any, schema: Any, path: Path) -> Any:
    if batch.schema.equals(schema):
        return batch
    try:
        return batch.select(schema.names).cast(schema)
    except (KeyError, ValueError, NotImplementedError) as exc:
        raise ConfigError(f"{path} does not match the schema of the first input file ({exc})") from exc
