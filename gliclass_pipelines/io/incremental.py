"""Incremental runs: which rows were already classified, under which fingerprint.

The state is a folder of this tool's (the same marker and ownership rules as an output): two Parquet
parts holding the 64-bit keys of the last input's ids, and of its rows (id, text and per-row labels);
and ``_SUCCESS``, a JSON record of the fingerprint it was classified under. A row
whose key is in the state is skipped; a new id is new, a known id with another key changed. Ids of the
state missing from this input are counted as deleted. Rows that failed are not recorded: they are
tried again. The state is committed after the output, so a run killed in between classifies its rows
again next time (at least once; merging by id makes that harmless).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.io.locks import create_locked_marker, release
from gliclass_pipelines.io.output import commit, is_complete, temporary_path, tidy_beside
from gliclass_pipelines.io.ownership import SUCCESS, check_replaceable
from gliclass_pipelines.io.readers import Chunk

ROWS_FILE, IDS_FILE = "part-rows.parquet", "part-ids.parquet"


class FingerprintChanged(ConfigError):
    """The state was written under another model revision or taxonomy."""


@dataclass
class State:
    """The keys of the rows classified before (sorted), and the fingerprint they were classified under."""

    fingerprint: str | None = None
    id_keys: Any = None
    row_keys: Any = None


def load_state(folder: Path, fingerprint: str, full: bool) -> State:
    """The previous state in ``folder`` (empty when there is none, or with ``full``); raises
    FingerprintChanged when it was written under another fingerprint and ``full`` is not set."""
    import numpy as np
    import pyarrow.parquet as pq

    tidy_beside(folder)
    empty = State(fingerprint, np.empty(0, np.uint64), np.empty(0, np.uint64))
    if not folder.exists():
        return empty
    check_replaceable(folder)
    if not is_complete(folder):
        return empty
    record = json.loads((folder / SUCCESS).read_text(encoding="utf-8"))
    if record.get("fingerprint") != fingerprint and not full:
        raise FingerprintChanged(
            f"the state {shorten(str(folder))} was classified under fingerprint {record.get('fingerprint')} "
            f"({_what(record)}); this run's is {fingerprint}. Its results would mix two models or "
            "taxonomies: pass --full to classify every row again, or give another --state"
        )
    if full:
        return empty
    id_keys = pq.read_table(folder / IDS_FILE).column("id_key").to_numpy()
    row_keys = pq.read_table(folder / ROWS_FILE).column("row_key").to_numpy()
    return State(fingerprint, np.sort(id_keys), np.sort(row_keys))


def _what(record: dict[str, Any]) -> str:
    prov = record.get("provenance") or {}
    model = prov.get("model_source", "?")
    return f"model {model}, revision {(prov.get('model') or {}).get('revision', '?')}"


def _key(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def row_keys(
    table: Any, id_column: str, text_column: str, labels_column: str | None, *options: str | None
) -> tuple[Any, Any]:
    """Each row's id key, and its key of id, text, labels and the per-row `options` columns (its prompt
    and threshold), as uint64 arrays. A row whose prompt or threshold changed is classified again."""
    import numpy as np

    ids = table.column(id_column).to_pylist()
    texts = table.column(text_column).to_pylist()
    labels = table.column(labels_column).to_pylist() if labels_column else [None] * len(ids)
    extra = [table.column(name).to_pylist() for name in options if name is not None]
    id_bytes = [repr(i).encode("utf-8", "surrogateescape") for i in ids]
    id_keys = np.fromiter((_key(b) for b in id_bytes), np.uint64, len(ids))
    rows = (
        _key(
            b
            + b"\0"
            + repr(t).encode("utf-8", "surrogateescape")
            + b"\0"
            + repr(lab).encode("utf-8", "replace")
            + b"".join(b"\0" + repr(cell).encode("utf-8", "surrogateescape") for cell in cells)
        )
        for b, t, lab, *cells in zip(id_bytes, texts, labels, *extra, strict=True)
    )
    return id_keys, np.fromiter(rows, np.uint64, len(ids))


def _contains(sorted_keys: Any, keys: Any) -> Any:
    import numpy as np

    if not len(sorted_keys):
        return np.zeros(len(keys), bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[at] == keys


@dataclass
class Tracker:
    """Picks the rows of each chunk to classify, and gathers the state of this run."""

    previous: State
    id_column: str
    text_column: str
    labels_column: str | None = None
    prompt_column: str | None = None
    threshold_column: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict(skipped=0, new=0, changed=0, deleted=0))
    _ids: list[Any] = field(default_factory=list)
    _rows: list[Any] = field(default_factory=list)

    def select(self, chunk: Chunk) -> tuple[Chunk, Any]:
        """The chunk's rows to classify (its problems renumbered), and their keys."""
        import numpy as np
        import pyarrow as pa

        columns = (self.labels_column, self.prompt_column, self.threshold_column)
        id_keys, keys = row_keys(chunk.table, self.id_column, self.text_column, *columns)
        skip = _contains(self.previous.row_keys, keys)
        known = _contains(self.previous.id_keys, id_keys)
        self.counts["skipped"] += int(skip.sum())
        self.counts["changed"] += int((known & ~skip).sum())
        self.counts["new"] += int((~known).sum())
        self._ids.append(id_keys)
        self._rows.append(keys[skip])
        picked = np.flatnonzero(~skip)
        renumber = {int(old): new for new, old in enumerate(picked)}
        problems = {renumber[i]: p for i, p in chunk.problems.items() if i in renumber}
        table = chunk.table.take(pa.array(picked, pa.int64()))
        return Chunk(table, problems, chunk.done), (id_keys[picked], keys[picked])

    def record(self, keys: tuple[Any, Any], failed: Any) -> None:
        """Keep the keys of the classified rows that did not fail."""
        self._rows.append(keys[1][~failed])

    def finish(self) -> State:
        """This run's state; counts the previous ids absent from this input as deleted."""
        import numpy as np

        ids = np.unique(np.concatenate(self._ids)) if self._ids else np.empty(0, np.uint64)
        gone = ~_contains(ids, self.previous.id_keys)
        self.counts["deleted"] = int(np.unique(self.previous.id_keys[gone]).size)
        rows = np.concatenate(self._rows) if self._rows else np.empty(0, np.uint64)
        return State(self.previous.fingerprint, ids, np.unique(rows))


def save_state(folder: Path, state: State, record: dict[str, Any]) -> None:
    """Write the state beside ``folder`` and commit it in place (replacing only a state of ours)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    temp = temporary_path(folder)
    lock = None
    try:
        temp.mkdir(parents=True)
        lock = create_locked_marker(temp)
        pq.write_table(pa.table({"row_key": pa.array(state.row_keys, pa.uint64())}), temp / ROWS_FILE)
        pq.write_table(pa.table({"id_key": pa.array(state.id_keys, pa.uint64())}), temp / IDS_FILE)
        body = {"fingerprint": state.fingerprint, **record}
        commit(temp, folder, "overwrite", json.dumps(body, indent=2, default=str))
    finally:
        if temp.exists() and not temp.is_symlink():
            shutil.rmtree(temp, ignore_errors=True)
        release(lock)
