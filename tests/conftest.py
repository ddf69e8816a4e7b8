from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

import pytest  # noqa: E402

DATA_DIR = Path(__file__).resolve().parent / "data"  # small real-text fixtures: see data/README.md

SPARK_MASTER = "local[2,2]"  # two cores; a failed task is tried once more, as on a cluster
SPARK_CONF = {
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "128",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.python.worker.reuse": "true",
}


def spark_python_workers() -> set[int]:
    """The pids of the Python workers that the pyspark daemon under this process has forked."""
    import psutil

    found = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if "pyspark.daemon" in " ".join(proc.cmdline()):
                found.update(child.pid for child in proc.children())
        except psutil.Error:
            continue
    return found


def read_jsonl(name: str, limit: int) -> list[dict]:
    rows = []
    with open(DATA_DIR / name, encoding="utf-8") as handle:
        for line in handle:
            rows.append(json.loads(line))
            if len(rows) >= limit:
                break
    return rows


@pytest.fixture(scope="session")
def debian_rows() -> list[dict]:
    return read_jsonl("debian_packages.jsonl", 400)


@pytest.fixture(scope="session")
def debian_texts(debian_rows) -> list[str]:
    return [row["text"] for row in debian_rows]


def _frozen(value):
    """A factory argument as part of a cache key (a config mapping as sorted pairs)."""
    return tuple(sorted(value.items())) if isinstance(value, dict) else value


@pytest.fixture(scope="session")
def checkpoint_factory(tmp_path_factory):
    """Build each tiny checkpoint variant once per session: factory(**variant) -> Path."""
    from gliclass_pipelines.testing.checkpoints import make_tiny_checkpoint

    built: dict[tuple, Path] = {}

    def build(**variant) -> Path:
        key = tuple(sorted((k, _frozen(v)) for k, v in variant.items()))
        if key not in built:
            name = "-".join(f"{k}={v}" for k, v in key) or "default"
            name = "".join(c if c.isalnum() or c in "-=_." else "_" for c in name)[:100]
            built[key] = make_tiny_checkpoint(tmp_path_factory.mktemp(name), **variant)
        return built[key]

    return build


@pytest.fixture(scope="session")
def tiny_checkpoint(checkpoint_factory) -> Path:
    return checkpoint_factory()


@pytest.fixture(scope="session")
def spark():
    """One SparkSession for the whole run: its JVM and Python workers start once, not once per module."""
    pytest.importorskip("pyspark")
    pytest.importorskip("pandas")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(SPARK_MASTER).appName("gliclass-pipelines-tests")
    for key, value in SPARK_CONF.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def clf(tiny_checkpoint):
    """The in-process Classifier on the default tiny checkpoint, loaded once for every module."""
    from gliclass_pipelines import Classifier

    return Classifier.load(str(tiny_checkpoint), device="cpu")


@pytest.fixture(autouse=True)
def _restore_library_log_levels():
    """The CLI's main() sets the library's log levels for its process; in-process CLI tests must not
    leave them set for the tests that run after them (caplog would miss their INFO lines)."""
    import logging

    names = ("gliclass_pipelines", "gliclass_pipelines.core.config")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
