"""What this tool may replace or delete: only a folder it wrote itself, and never a place a user lives in.

A run writes ``_GLICLASS_PIPELINES`` into its temporary folder before anything else. A folder counts as
this tool's own output when it is a real folder (not a symlink) holding that marker and nothing but
what a run writes: the marker, ``_SUCCESS``, Parquet part files and the engines' checksum files.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.errors import ConfigError

MARKER = "_GLICLASS_PIPELINES"
SUCCESS = "_SUCCESS"
TOOL = "gliclass-pipelines"
OWN_FILE = re.compile(r"^(_SUCCESS|\._SUCCESS\.crc|part-[\w.-]+\.parquet|\.part-[\w.-]+\.parquet\.crc)$")
SHOWN = 5
LEGACY_FINETUNE_MARKER = ".gliclass-finetune"  # fine-tune output of older versions: still ours, resumable


class NotOursError(ConfigError):
    """The output is something this tool did not write, or a place it must never replace."""


def marker_record() -> str:
    from gliclass_pipelines import __version__

    return json.dumps({"tool": TOOL, "version": __version__, "pid": os.getpid()}) + "\n"


def write_marker(folder: Path) -> None:
    (folder / MARKER).write_text(marker_record(), encoding="utf-8")


def has_marker(folder: Path) -> bool:
    marker = folder / MARKER
    if marker.is_symlink() or not marker.is_file():
        return False
    try:
        with open(marker, "rb") as handle:
            return json.loads(handle.read(4096)).get("tool") == TOOL
    except (OSError, ValueError, AttributeError):
        return False


def foreign_entries(folder: Path) -> list[str]:
    """The names in ``folder`` that a run does not write (empty: the folder is this tool's output)."""
    if folder.is_symlink() or not folder.is_dir():
        return [folder.name]
    entries = sorted(os.scandir(folder), key=lambda e: e.name)
    if not entries:
        return []  # an empty folder: replacing it loses nothing
    foreign = [e.name for e in entries if not _own_entry(e)]
    if not has_marker(folder):
        foreign.insert(0, f"no {MARKER} marker")
    return foreign


def _own_entry(entry: os.DirEntry) -> bool:
    if entry.name == MARKER:
        return entry.is_file(follow_symlinks=False)
    return bool(OWN_FILE.match(entry.name)) and entry.is_file(follow_symlinks=False)


def check_replaceable(output: Path) -> None:
    """Raise NotOursError, naming what is there, unless ``output`` is exactly a previous run's output."""
    foreign = foreign_entries(output)
    if foreign:
        more = f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else ""
        shown = shorten(", ".join(foreign[:SHOWN]), 400) + more
        raise NotOursError(
            f"output {output} is not a gliclass-pipelines output (it holds: {shown}); nothing was "
            "touched. Choose another --output, or remove it yourself"
        )


def remove_own_output(folder: Path) -> bool:
    """Delete the files a run writes, the marker last (a folder cut short stays recognisably ours), then
    the folder if it is empty; True when it is gone."""
    entries = sorted(os.scandir(folder), key=lambda e: e.name == MARKER)
    for entry in entries:
        if _own_entry(entry):
            os.unlink(entry.path)
    try:
        folder.rmdir()
    except OSError:
        return False
    return True


def check_claimable(named: str | os.PathLike[str], what: str) -> Path:
    """The folder to write ``what`` into, if it is new, empty, or one this tool wrote before (it holds
    the marker); anything else is refused, so a user's own files are never overwritten."""
    folder = Path(named).expanduser().resolve()
    check_utf8_path(folder, f"{what} folder")
    if folder.exists() and not folder.is_dir():
        shown = shorten(str(folder))
        raise NotOursError(f"{what} folder {shown!r} exists and is not a folder; nothing was touched")
    if folder.is_dir() and any(folder.iterdir()) and not (has_marker(folder) or _legacy_marker(folder)):
        raise NotOursError(
            f"{what} folder {shorten(str(folder))!r} is not empty and was not written by {TOOL}; "
            "nothing was touched. Give a new or empty folder"
        )
    return folder


def _legacy_marker(folder: Path) -> bool:
    marker = folder / LEGACY_FINETUNE_MARKER
    return marker.is_file() and not marker.is_symlink()


def claim_folder(named: str | os.PathLike[str], what: str) -> Path:
    """:func:`check_claimable`, then create the folder and mark it as this tool's."""
    folder = check_claimable(named, what)
    folder.mkdir(parents=True, exist_ok=True)
    write_marker(folder)
    return folder


def check_utf8_path(path: Path, what: str) -> None:
    """Refuse a path with a byte that is not UTF-8 (Python holds it as a surrogate escape): Arrow, Spark
    and Beam take paths as UTF-8 and would fail only when the first file is written."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        shown = shorten(text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))
        raise ConfigError(
            f"{what} {shown} holds a byte that is not UTF-8 (at character {err.start}); Parquet writers "
            "need UTF-8 paths: rename the folder, or give another"
        ) from err


def check_output_place(named: Path, protected: Iterable[tuple[str, Path]]) -> Path:
    """The output as the user named it (absolute, ``~`` expanded), refused where replacing it would
    destroy what is not ours: a symlink, an existing regular file, ``/``, or a folder that is or holds
    one of ``protected`` (the working folder, home, the input, the model...)."""
    absolute = Path(os.path.abspath(named.expanduser()))
    check_utf8_path(absolute, "output")
    if absolute.is_symlink():
        raise NotOursError(f"output {absolute} is a symlink (to {os.readlink(absolute)}); give a real folder")
    resolved = absolute.resolve()
    if resolved.exists() and not resolved.is_dir():
        raise NotOursError(f"output {absolute} is an existing file, not a folder; nothing was touched")
    if resolved == Path(resolved.anchor):
        raise NotOursError(f"output {absolute} is the root folder; give a folder of its own")
    for what, place in protected:
        place = Path(os.path.abspath(place)).resolve()
        if resolved == place or resolved in place.parents:
            held = "is" if resolved == place else "holds"
            raise NotOursError(f"output {absolute} {held} {what} ({place}); give a folder of its own")
    return resolved
