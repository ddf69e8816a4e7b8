"""Delta Lake tables through delta-rs (``pip install gliclass-pipelines[delta]``).

A run classifies into Parquet parts in a temporary folder as usual, then hands them to one Delta
commit: append, overwrite, or merge by id (incremental runs). A commit is one new log entry, written
last, so a run killed at any moment leaves the table at its previous version (its unfinished data
files are not in the log; ``DeltaTable.vacuum`` removes them). Overwrite replaces only a table this tool
created (its description says so), or one the user names with ``--overwrite-table``. A run whose
columns differ from the table's (another output kind, other input columns) is refused before writing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.io.ownership import NotOursError

OWNER = "written by gliclass-pipelines"
PROVENANCE_KEY = "gliclass_pipelines.provenance"


class SchemaChanged(ConfigError):
    """The run's columns differ from the table's."""


def deltalake() -> Any:
    try:
        import deltalake
    except ImportError as exc:
        raise ConfigError(
            "Delta Lake tables need the deltalake package: pip install 'gliclass-pipelines[delta]'"
        ) from exc
    return deltalake


def is_delta(path: Path) -> bool:
    return (path / "_delta_log").is_dir()


def check_target(path: Path, mode: str, merge: bool, named: Path | None) -> None:
    """Refuse, before any model loads, a write this table must not take."""
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    if not is_delta(path):
        raise NotOursError(
            f"output {shorten(str(path))} exists and is not a Delta table; nothing was touched"
        )
    if merge or mode == "append":
        return
    if mode in ("error", "skip-existing"):
        from gliclass_pipelines.io.output import OutputExistsError

        raise OutputExistsError(
            f"Delta table {path} already exists; pass --mode append to add this run's rows, --incremental to "
            "merge them by id, or --mode overwrite to replace it"
        )
    if not owned(path) and (named is None or named.resolve() != path.resolve()):
        raise NotOursError(
            f"Delta table {path} was not created by gliclass-pipelines; to replace it anyway, name it: "
            f"--overwrite-table {path}"
        )


def owned(path: Path) -> bool:
    return deltalake().DeltaTable(str(path)).metadata().description == OWNER


def input_files(path: Path) -> list[Path]:
    """The data files of the table's current version (for reading it as Parquet input)."""
    table = deltalake().DeltaTable(str(path))
    if table.metadata().partition_columns:
        raise ConfigError(f"Delta table {path} is partitioned; partitioned input tables are not read yet")
    if "deletionVectors" in (table.protocol().reader_features or []):
        raise ConfigError(f"Delta table {path} uses deletion vectors, which this reader does not apply")
    files = [Path(uri.removeprefix("file://")) for uri in table.file_uris()]
    if not files:
        raise ConfigError(f"Delta table {path} holds no data files")
    return files


def plain_schema(schema: Any) -> Any:
    """delta-rs writes text as Arrow string views, which the readers cannot slice: plain types instead."""
    import pyarrow as pa

    def plain(kind: Any) -> Any:
        if pa.types.is_string_view(kind):
            return pa.string()
        if pa.types.is_binary_view(kind):
            return pa.binary()
        if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_list_view(kind):
            return pa.list_(kind.value_field.with_type(plain(kind.value_type)))
        if pa.types.is_struct(kind):
            return pa.struct([f.with_type(plain(f.type)) for f in kind])
        if pa.types.is_map(kind):
            return pa.map_(plain(kind.key_type), plain(kind.item_type))
        return kind

    return pa.schema([f.with_type(plain(f.type)) for f in schema], metadata=schema.metadata)


def write(
    path: Path, data: Any, schema: Any, *, mode: str, merge_on: str | None, record: dict[str, Any]
) -> dict:
    """Commit ``data`` (an Arrow stream of ``schema``) to the table at ``path``; the commit's metrics."""
    dl = deltalake()
    commit = dl.CommitProperties(custom_metadata={PROVENANCE_KEY: json.dumps(record, sort_keys=True)})
    exists = is_delta(path)
    if exists:
        check_schema(dl.DeltaTable(str(path)), schema, replacing=mode == "overwrite" and merge_on is None)
    if merge_on is not None and exists:
        table = dl.DeltaTable(str(path))
        merger = table.merge(
            data,
            predicate=f"t.`{merge_on}` = s.`{merge_on}`",
            source_alias="s",
            target_alias="t",
            commit_properties=commit,
        )
        return merger.when_matched_update_all().when_not_matched_insert_all().execute()
    write_mode = "overwrite" if mode == "overwrite" else "append"
    schema_mode = "overwrite" if write_mode == "overwrite" else None  # an overwrite may change the columns
    dl.write_deltalake(
        str(path), data, mode=write_mode, schema_mode=schema_mode, description=OWNER, commit_properties=commit
    )
    return {}


def check_schema(table: Any, schema: Any, replacing: bool) -> None:
    """Refuse columns other than the table's (an overwrite may change them)."""
    if replacing:
        return
    dl = deltalake()
    have = [(f.name, str(f.type)) for f in table.schema().fields]
    want = [(f.name, str(f.type)) for f in dl.Schema.from_arrow(schema).fields]
    if have != want:
        shown = shorten(", ".join(f"{n}: {t}" for n, t in have), 300)
        new = shorten(", ".join(f"{n}: {t}" for n, t in want), 300)
        raise SchemaChanged(
            f"Delta table {table.table_uri} has the columns {shown}; this run writes {new}. A run with "
            "another output kind or other input columns needs another table, or --mode overwrite to replace "
            "it; nothing was written"
        )


def provenance_of(path: Path) -> dict[str, Any] | None:
    """The provenance record of the table's last commit (None when another tool made it)."""
    history = deltalake().DeltaTable(str(path)).history(1)
    raw = history[0].get(PROVENANCE_KEY) if history else None
    return None if raw is None else json.loads(raw)
