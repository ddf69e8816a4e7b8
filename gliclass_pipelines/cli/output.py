"""Atomic output: parts go to a temporary directory beside the output, which is renamed into place last."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Any

from gliclass_pipelines.cli.ownership import SUCCESS, check_replaceable, has_marker, remove_own_output
from gliclass_pipelines.errors import ConfigError

logger = logging.getLogger(__name__)

ROW_GROUP_ROWS = 65_536


class OutputExistsError(ConfigError):
    """The output is there already and --mode error forbids replacing it."""


def should_skip(output: Path, mode: str) -> bool:
    """True when --mode skip-existing finds a complete output; raises under --mode error if it exists."""
    if not output.exists() and not output.is_symlink():
        return False
    if mode == "error":
        raise OutputExistsError(
            f"output {output} already exists; pass --mode overwrite to replace it, "
            "or --mode skip-existing to keep a complete one"
        )
    if mode == "skip-existing" and (output / SUCCESS).is_file():
        return True
    check_replaceable(output)
    if mode == "skip-existing":
        logger.warning("%s exists without %s (an incomplete run); replacing it", output, SUCCESS)
    return False


def temporary_path(output: Path) -> Path:
    host = socket.gethostname().replace("-", "_")
    return output.parent / f"{output.name}.tmp-{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_stale_temporaries(output: Path) -> None:
    """Remove temporary directories left by killed runs on this host (their process is gone, their
    marker says this tool made them)."""
    host = socket.gethostname().replace("-", "_")
    for path in output.parent.glob(f"{output.name}.tmp-*"):
        owner, _, pid_tag = path.name[len(output.name) + len(".tmp-") :].rpartition("-")[0].rpartition("-")
        mine = owner == host and pid_tag.isdigit() and not path.is_symlink() and has_marker(path)
        if mine and not _alive(int(pid_tag)):
            logger.warning("removing %s, left by a killed run", path)
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def commit(temp: Path, output: Path, mode: str, success: str) -> None:
    """Write _SUCCESS last, flush, and rename the finished directory into place."""
    (temp / SUCCESS).write_text(success + "\n", encoding="utf-8")
    with contextlib.suppress(FileNotFoundError):
        (temp / f".{SUCCESS}.crc").unlink()  # Spark's checksum of its own, empty marker
    for path in temp.rglob("*"):
        if path.is_file():
            _fsync(path)
    _fsync(temp)
    if output.exists() or output.is_symlink():
        if mode == "error":
            raise OutputExistsError(f"output {output} appeared while this job ran; nothing was replaced")
        check_replaceable(output)  # again: it may have changed while the job ran
        old = output.parent / f"{output.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(output, old)
        os.rename(temp, output)
        if not remove_own_output(old):
            logger.warning("kept %s: files appeared in the previous output while this job ran", old)
    else:
        os.rename(temp, output)
    _fsync(output.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def part_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix == ".parquet" and p.name[0] not in "._")


class PartWriter:
    """Parquet part files of at most ``rows_per_file`` rows, in order, in row groups of ROW_GROUP_ROWS."""

    def __init__(self, directory: Path, schema: Any, rows_per_file: int) -> None:
        self.directory, self.schema, self.rows_per_file = directory, schema, rows_per_file
        self.writer: Any = None
        self.parts = self.rows_in_part = 0
        self.pending: list[Any] = []
        self.pending_rows = 0

    def write(self, table: Any) -> None:
        while table.num_rows:
            take = min(table.num_rows, self.rows_per_file - self.rows_in_part)
            self.pending.append(table.slice(0, take))
            self.pending_rows += take
            self.rows_in_part += take
            table = table.slice(take)
            if self.pending_rows >= ROW_GROUP_ROWS or self.rows_in_part == self.rows_per_file:
                self._flush()
            if self.rows_in_part == self.rows_per_file:
                self._close_part()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:
            path = self.directory / f"part-{self.parts:05d}.parquet"
            self.writer = pq.ParquetWriter(path, self.schema, compression="snappy")
        if self.pending:
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=ROW_GROUP_ROWS)
        self.pending, self.pending_rows = [], 0

    def _close_part(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.parts += 1
        self.rows_in_part = 0

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is None and (self.pending or self.parts == 0):
            self._flush()  # an empty input still gets one part, so readers see the schema
        if self.writer is not None:
            self.writer.close()
            self.writer = None
