"""Which run a folder belongs to: the marker file, held open under an exclusive ``flock`` while its run lives.

Host names and process ids do not tell runs apart (containers with host networking share a host name, and
each PID namespace numbers its processes from 1); a lock does, within one kernel. A folder is left by a
killed run only when its marker's lock can be taken. Where the file system cannot lock, nothing counts as
left behind, so nothing is removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from gliclass_pipelines.io.ownership import MARKER, marker_record


def create_locked_marker(folder: Path) -> int:
    """Write ``folder``'s marker, locked before its first byte (so it is never seen unlocked); the open
    descriptor holds the lock until :func:`release`."""
    fd = os.open(folder / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, marker_record().encode("utf-8"))
    except BaseException:
        os.close(fd)
        raise
    return fd


class Held(Exception):
    """A live run holds the folder's lock."""


def take_if_free(folder: Path) -> int | None:
    """The lock on ``folder``'s marker when no run holds it (the caller then owns the folder until
    :func:`release`); None when the marker is gone or the file system cannot lock. Raises Held when a
    live run holds it."""
    marker = folder / MARKER
    try:
        fd = os.open(marker, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        opened, now = os.fstat(fd), os.stat(marker, follow_symlinks=False)
    except BlockingIOError:
        os.close(fd)
        raise Held(str(folder)) from None
    except OSError:  # no locks on this file system (ENOLCK), or the marker went meanwhile
        os.close(fd)
        return None
    if (opened.st_dev, opened.st_ino) != (now.st_dev, now.st_ino):  # renamed meanwhile: not this folder's
        os.close(fd)
        return None
    return fd


def release(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
