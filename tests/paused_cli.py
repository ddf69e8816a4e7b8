"""Run ``gliclass-pipelines`` in a child process that stops at one point until the test lets it go on.

    python paused_cli.py POINT READY GO [FAKE_PID] -- classify ...

POINT is ``swap`` (an overwrite's commit, between its two renames: the previous output is aside, the new
one not yet in) or ``chunk`` (inside the job, before the first chunk is classified). The child writes the
file READY when it gets there, and goes on once the file GO exists (or after two minutes). FAKE_PID, when
given, is the pid its temporary folder's name records, as a run in another PID namespace would.
Everything else is the real CLI.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from pathlib import Path

WAIT_SECONDS = 120


def pause(ready: Path, go: Path) -> None:
    ready.write_text("here\n")
    deadline = time.monotonic() + WAIT_SECONDS
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def pause_between_renames(ready: Path, go: Path) -> None:
    real = os.rename

    def rename(src, dst, *args, **kwargs):
        real(src, dst, *args, **kwargs)
        if ".old-" in os.fspath(dst):  # the previous output was just moved aside
            pause(ready, go)

    os.rename = rename


def pause_before_first_chunk(ready: Path, go: Path) -> None:
    from gliclass_pipelines.cli import run_local

    real = run_local.classify_chunk

    def classify_chunk(*args, **kwargs):
        pause(ready, go)
        return real(*args, **kwargs)

    run_local.classify_chunk = classify_chunk


def fake_pid(pid: str) -> None:
    from gliclass_pipelines.io import output

    host = socket.gethostname().replace("-", "_")
    output.run_tag = lambda: f"{host}-{pid}-{uuid.uuid4().hex[:8]}"


def main(argv: list[str]) -> int:
    split = argv.index("--")
    point, ready, go, *pid = argv[:split]
    if pid:
        fake_pid(pid[0])
    {"swap": pause_between_renames, "chunk": pause_before_first_chunk}[point](Path(ready), Path(go))
    from gliclass_pipelines import cli

    return cli.main(argv[split + 1 :])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
