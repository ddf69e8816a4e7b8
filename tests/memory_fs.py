"""Put a checkpoint folder into fsspec's in-process memory filesystem, as a remote model source."""

from __future__ import annotations

from pathlib import Path

import fsspec


def put_in_memory_fs(directory: Path, uri: str) -> None:
    """Copy every file under ``directory`` to ``uri`` (memory://...), replacing what was there."""
    fs, root = fsspec.core.url_to_fs(uri)
    if fs.exists(root):
        fs.rm(root, recursive=True)
    for path in directory.rglob("*"):
        if path.is_file():
            fs.pipe(f"{root}/{path.relative_to(directory)}", path.read_bytes())
