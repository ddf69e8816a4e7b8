"""Atomic output: parts go to a temporary directory beside the output, which is renamed into place last."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.io.interrupts import signals_held
from gliclass_pipelines.io.locks import Held, release, take_if_free
from gliclass_pipelines.io.ownership import SUCCESS, check_replaceable, has_marker, remove_own_output

logger = logging.getLogger(__name__)

ROW_GROUP_ROWS = 65_536
LOCK_WAIT_SECONDS = 10.0  # for another run's commit of the same output to end


class OutputExistsError(ConfigError):
    """The output is there already and --mode error forbids replacing it."""


class OutputBusyError(ConfigError):
    """Another run is replacing the same output at this moment."""


def should_skip(output: Path, mode: str) -> bool:
    """True when --mode skip-existing finds a complete output; raises under --mode error if it exists."""
    if not output.exists() and not output.is_symlink():
        return False
    if mode == "error":
        raise OutputExistsError(
            f"output {output} already exists; pass --mode overwrite to replace it, "
            "or --mode skip-existing to keep a complete one"
        )
    if mode == "skip-existing" and is_complete(output):
        return True
    check_replaceable(output)  # a folder without our marker (a Spark job's, a user's) is refused here
    if mode == "skip-existing":
        logger.warning("%s exists without %s (an incomplete run); replacing it", output, SUCCESS)
    return False


def is_complete(output: Path) -> bool:
    """A finished output of this tool: our marker, and the _SUCCESS a run writes last (a real file)."""
    success = output / SUCCESS
    return has_marker(output) and success.is_file() and not success.is_symlink()


def run_tag() -> str:
    """This run in a folder name, for people reading a listing: host, pid and a random part. Whether a
    run still lives is told by its marker's lock (cli.locks), never by these."""
    host = socket.gethostname().replace("-", "_")
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def temporary_path(output: Path) -> Path:
    return output.parent / f"{output.name}.tmp-{run_tag()}"


def _ours_beside(output: Path, kind: str) -> list[Path]:
    """This host's ``OUT.tmp-*`` or ``OUT.old-*`` folders holding our marker (another host's are never
    judged here: its locks may not reach this one)."""
    host = socket.gethostname().replace("-", "_")
    found = []
    for path in sorted(output.parent.glob(f"{glob.escape(output.name)}.{kind}-*")):
        parts = path.name[len(output.name) + len(kind) + 2 :].rsplit("-", 2)
        if len(parts) == 3 and parts[0] == host and not path.is_symlink() and has_marker(path):
            found.append(path)
    return found


def remove_stale_temporaries(output: Path) -> None:
    """Remove temporary folders left by killed runs: ours (marker), on this host, and unlocked."""
    for path in _ours_beside(output, "tmp"):
        lock = _free_lock(path)
        if lock is None:
            continue  # a live run's (or the file system cannot lock): left alone
        try:
            logger.warning("removing %s, left by a killed run", path)
            shutil.rmtree(path, ignore_errors=True)
        finally:
            release(lock)


def _free_lock(folder: Path) -> int | None:
    try:
        return take_if_free(folder)
    except Held:
        return None


def tidy_beside(output: Path) -> None:
    """Before a run looks at ``output``: finish swaps that killed runs cut short, remove their temporaries."""
    recover_interrupted(output)
    remove_stale_temporaries(output)


def recover_interrupted(output: Path) -> None:
    """Finish what a run killed while swapping ``output`` left: with no output there, its previous output
    (``OUT.old-*``) is renamed back; beside a complete output, the previous one is removed."""
    for old in _ours_beside(output, "old"):
        lock = _free_lock(old)
        if lock is None:
            continue  # a live run is swapping it (or the file system cannot lock)
        try:
            if not output.exists() and not output.is_symlink():
                os.rename(old, output)
                logger.warning("restored %s from %s: a run was killed while replacing it", output, old)
            elif remove_own_output(old):
                logger.warning("removed %s, the output a killed run had replaced", old)
            else:
                logger.warning("kept %s (a previous output with other files in it)", old)
        finally:
            release(lock)


def commit(temp: Path, output: Path, mode: str, success: str) -> None:
    """Write _SUCCESS last, flush, and rename the finished directory into place.

    Replacing a previous output takes two renames (the old one aside, the new one in); SIGTERM and
    SIGINT wait until both are done, a failure of the second puts the old one back, and a run killed
    in between (SIGKILL) is recovered by the next (:func:`recover_interrupted`).
    """
    (temp / SUCCESS).write_text(success + "\n", encoding="utf-8")
    with contextlib.suppress(FileNotFoundError):
        (temp / f".{SUCCESS}.crc").unlink()  # Spark's checksum of its own, empty marker
    for path in temp.rglob("*"):
        if path.is_file():
            _fsync(path)
    _fsync(temp)
    if not output.exists() and not output.is_symlink():
        os.rename(temp, output)
    elif mode == "error":
        raise OutputExistsError(f"output {output} appeared while this job ran; nothing was replaced")
    else:
        _replace(temp, output)
    _fsync(output.parent)


def _replace(temp: Path, output: Path) -> None:
    lock = _lock_previous(output)
    try:
        with signals_held():
            check_replaceable(output)  # again: it may have changed while the job ran
            old = output.parent / f"{output.name}.old-{run_tag()}"
            os.rename(output, old)
            try:
                os.rename(temp, output)
            except BaseException:
                _put_back(old, output)
                raise
            _remove_previous(old)
    finally:
        release(lock)


def _remove_previous(old: Path) -> None:
    try:
        if remove_own_output(old):
            return
        logger.warning("kept %s: files appeared in the previous output while this job ran", old)
    except OSError as exc:
        logger.warning("kept %s, the previous output: %s; the next run removes it", old, exc)


def _lock_previous(output: Path) -> int | None:
    """The previous output's marker lock, so no other run takes its ``.old`` folder for a killed run's.
    A committing run holds it for an instant. None: no marker (an empty folder) or no locks here."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            return take_if_free(output)
        except Held:
            if time.monotonic() > deadline:
                raise OutputBusyError(
                    f"output {output} is being replaced by another run; nothing was replaced"
                ) from None
            time.sleep(0.05)


def _put_back(old: Path, output: Path) -> None:
    try:
        os.rename(old, output)
    except OSError as exc:
        raise OSError(f"the previous output is at {old}; rename it to {output} ({exc})") from exc
    logger.warning("the new output could not be moved in; the previous output is back at %s", output)


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
