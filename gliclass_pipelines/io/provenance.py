"""Provenance on written results: in each Parquet part's key-value metadata, and as an optional column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METADATA_KEY = b"gliclass_pipelines.provenance"


def with_provenance(schema: Any, record: dict[str, Any], column: str | None) -> Any:
    """``schema`` carrying ``record`` in its metadata (Parquet writes it into every file's footer), with
    a string ``column`` for each row's fingerprint appended when one is named."""
    import pyarrow as pa

    if column is not None:
        schema = schema.append(pa.field(column, pa.string()))
    metadata = dict(schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(record, sort_keys=True).encode("utf-8")
    return schema.with_metadata(metadata)


def add_column(table: Any, column: str | None, fingerprint: str) -> Any:
    """``table`` with the fingerprint column filled (no column named: unchanged)."""
    import pyarrow as pa

    if column is None:
        return table
    return table.append_column(
        pa.field(column, pa.string()), pa.repeat(pa.scalar(fingerprint), table.num_rows)
    )


def read_provenance(path: str | Path) -> dict[str, Any] | None:
    """The provenance record in a Parquet file's footer, or None when it has none."""
    import pyarrow.parquet as pq

    raw = (pq.read_metadata(path).metadata or {}).get(METADATA_KEY)
    return None if raw is None else json.loads(raw)


def check_column_free(schema: Any, column: str | None) -> None:
    from gliclass_pipelines.errors import ConfigError

    if column is not None and column in schema.names:
        raise ConfigError(f"the input already has a column {column!r}; choose another --provenance-column")
