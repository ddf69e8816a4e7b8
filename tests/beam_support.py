"""A sink for Beam tests: every element to its own pickle file, read back with :func:`collected`."""

from __future__ import annotations

import pickle
import uuid
from pathlib import Path
from typing import Any


def sink(pcoll: Any, directory: Path, label: str = "Sink") -> Any:
    """Write every element to its own pickle file: works in any window, runner and process."""
    import apache_beam as beam

    directory.mkdir(parents=True, exist_ok=True)

    def write(item, directory=str(directory)):  # nested: cloudpickle ships it by value to workers
        import os
        import pickle

        with open(os.path.join(directory, uuid.uuid4().hex), "wb") as handle:
            pickle.dump(item, handle)

    return pcoll | label >> beam.Map(write)


def collected(directory: Path) -> list:
    """Every element a sink wrote to this directory (in no particular order)."""
    return [pickle.loads(p.read_bytes()) for p in directory.iterdir()] if directory.exists() else []
