"""torch's CPU threads, and a forked child that can still classify.

torch runs CPU work on an OpenMP thread pool that does not survive ``fork``: a child forked after the
parent has classified (gunicorn ``--preload``, Celery prefork, ``multiprocessing`` with fork) hangs in its
first parallel region, and going back to more than one thread there hangs too (measured). So in every
forked child torch runs on one thread; for more, start workers with ``spawn`` or load models after fork.
"""

from __future__ import annotations

import logging
import os

import torch

logger = logging.getLogger(__name__)

_forked = {"child": False, "warned": False}


def _after_fork_in_child() -> None:
    _forked["child"] = True
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_after_fork_in_child)


def set_threads(threads: int) -> None:
    """Run torch's CPU work on ``threads`` threads: one in a forked child, whatever was asked."""
    if _forked["child"] and threads > 1:
        if not _forked["warned"]:
            _forked["warned"] = True
            logger.warning(
                "process %d was forked from one that used torch: it runs torch on 1 thread, not %d "
                "(its thread pool does not survive fork; start workers with spawn for more)",
                os.getpid(),
                threads,
            )
        threads = 1
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
