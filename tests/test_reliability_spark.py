"""Reliability of the Spark adapter: fuzzed rows, a task that fails once, 200,000 rows, worker memory.

Everything runs in this process on the session-wide `spark` fixture of tests/conftest.py: local[2,2], so
a failed task is tried again (as on a cluster), with Arrow for pandas frames. The load job measures the
Python workers of that session: the pyspark daemon's children under this process.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyspark")

from conftest import spark_python_workers  # noqa: E402
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from reliability_support import (  # noqa: E402
    FAULTS,
    INPUTS,
    LOAD,
    case,
    label_problems,
    labels,
    texts,
)

pytest_plugins = ["reliability_support"]
pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "pypi_summaries.jsonl"  # 1,000 rows
LABELS = ["libraries", "games", "science", "networking", "web", "data", "security", "devtools"]
MIB = 1 << 20
LOAD_ROWS, SMALL_PARTITION = 200_000, 10_000

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)


def plain(record: Any) -> list[tuple[str, float]] | None:
    if record is None:
        return None
    return sorted((x["label"], float(x["score"])) for x in record)


def same(got: Any, want: Any) -> bool:
    got, want = plain(got), plain(want)
    if got is None or want is None:
        return got is want
    return [g[0] for g in got] == [w[0] for w in want] and all(
        math.isclose(g[1], w[1], abs_tol=1e-5) for g, w in zip(got, want)
    )


# ------------------------------------------------------------------------------------------------------
# Inputs (in this process)

MB_ROWS = [
    ("x" * MIB, ["games"]),
    ("word " * (MIB // 5), None),
    ("😀\x00\u202e" * (MIB // 12), ["a.b", None]),
]


@case(
    INPUTS,
    "Spark gliclass_udf, shared labels and a per-row labels column side by side, on fuzzed rows: random "
    "Unicode (control chars, NUL, emoji, RTL, zero-width, lone surrogates), whitespace, null texts, "
    "label arrays with nulls, duplicates, markers, separators; plus three 1 MB strings",
    "rows in = rows out, ids unique; every result equals the core's on the same text (float32); "
    "lone surrogates (which Spark's UTF-8 conversion replaces) give a row, not a failure",
)
def test_spark_fuzzed_rows(spark, tiny_checkpoint, clf, reliability):
    from gliclass_pipelines.spark.udf import gliclass_udf

    model = str(tiny_checkpoint)
    cell = st.one_of(st.none(), st.lists(st.one_of(labels(surrogates=False), st.none()), max_size=5))
    row = st.tuples(texts(non_strings=False), cell)

    @settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(row, min_size=20, max_size=60))
    @example(MB_ROWS)
    def check(rows):
        frame = spark.createDataFrame(
            [(i, t, c) for i, (t, c) in enumerate(rows)], "id long, text string, labels array<string>"
        )
        shared = gliclass_udf("text", model=model, labels=LABELS, threshold=0.0).alias("shared")
        own = gliclass_udf("text", model=model, labels_col="labels", threshold=0.0).alias("own")
        got = frame.select("id", shared, own).collect()
        assert sorted(r.id for r in got) == list(range(len(rows)))
        for r in got:
            check_row(clf, rows[r.id], r.shared, r.own)
        reliability.add(jobs=1, rows=len(rows), null_results=sum(r.shared is None for r in got))

    check()


def check_row(clf, source: tuple, shared: Any, own: Any) -> None:
    text, cell = source
    if isinstance(text, str) and not _encodable(text):
        return  # Spark replaced the lone surrogate before the UDF saw the text
    want_shared = clf.run([text], LABELS, threshold=0.0).results[0]
    want_own = clf.run([text], [cell], per_row=True, threshold=0.0).results[0]
    assert same(shared, want_shared), (text, shared, want_shared)
    assert same(own, want_own), (text, cell, own, want_own)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@case(
    INPUTS,
    "Spark gliclass_udf built on the driver with fuzzed shared label lists (duplicates, empty strings, "
    "markers, separators, lone surrogates, None, ints)",
    "invalid lists refused on the driver with a ConfigError naming the problem; no job starts",
)
def test_spark_fuzzed_labels_refused_on_the_driver(spark, tiny_checkpoint, reliability):
    from gliclass_pipelines import ConfigError
    from gliclass_pipelines.spark.udf import gliclass_udf

    values = st.lists(st.one_of(labels(), labels(), labels(), st.none(), st.integers()), max_size=8)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(values)
    def check(label_list):
        problems = label_problems(label_list)
        if not problems:
            gliclass_udf("text", model=str(tiny_checkpoint), labels=label_list)
            reliability.add(accepted=1)
            return
        with pytest.raises(ConfigError) as refused:
            gliclass_udf("text", model=str(tiny_checkpoint), labels=label_list)
        assert any(word in str(refused.value) for word in problems), (problems, str(refused.value))
        reliability.add(refused=1)

    check()


# ------------------------------------------------------------------------------------------------------
# Faults and load: the session is local[2,2], so a task that fails once is tried again


@case(
    FAULTS,
    "Spark job on local[2,2] (2 cores, a failed task tried again): 2,000 rows in 4 partitions; a "
    "mapInPandas step before gliclass_udf raises in partition 1 on its first attempt, after yielding one "
    "100-row Arrow batch; output written to Parquet",
    "the job succeeds after the retry; the Parquet output has every id exactly once, each result as the "
    "core gives it",
)
def test_fault_spark_task_retried(spark, tiny_checkpoint, tmp_path, reliability):
    report = _retry_job(spark, str(tiny_checkpoint), tmp_path)
    reliability.set(**report)
    assert report["failed_attempts"] == ["partition 1, attempt 0"]
    assert report["rows"] == report["distinct_ids"] == 2000
    assert (report["min_id"], report["max_id"]) == (0, 1999)
    assert report["mismatches"] == 0


@pytest.mark.slow
@case(
    LOAD,
    "Spark job on local[2,2] (2 cores): 200,000 PyPI summaries (tests/data's 1,000 repeated) in 2 "
    "partitions of 100,000, 8 labels, tiny checkpoint (hidden 32, 2 layers), written to Parquet; Python "
    "worker peak RSS (VmHWM, reset before each job) for a 10,000-row partition and for the 100,000-row ones",
    "rows in = rows out, ids unique, nulls only for blank texts; worker memory growth for 100,000 rows "
    "<= 1.5 x that for 10,000 rows + 32 MiB",
)
def test_load_200k_rows_and_worker_memory(spark, tiny_checkpoint, tmp_path, reliability):
    with arrow_batch_rows(spark, 10_000):  # Spark's default, as a user's job has it
        report = _load_job(spark, str(tiny_checkpoint), tmp_path)
    reliability.set(**report)
    assert report["rows_out"] == report["distinct_ids"] == LOAD_ROWS
    assert report["null_results"] == report["blank_texts"]
    assert report["fresh_workers"] == 0, "a Python worker was replaced during a measured job"
    assert report["growth_MiB_100k"] <= 1.5 * report["growth_MiB_10k"] + 32, report


# ------------------------------------------------------------------------------------------------------
# The jobs


def _load_job(spark, model: str, work: Path) -> dict[str, Any]:
    import pandas as pd
    from pyspark.sql import functions as F

    from gliclass_pipelines.spark.udf import gliclass_udf

    source = pd.read_json(DATA, lines=True)[["text"]]
    copies = LOAD_ROWS // len(source)
    frame = spark.createDataFrame(pd.concat([source] * copies, ignore_index=True))
    frame = frame.withColumn("id", F.monotonically_increasing_id())
    column = gliclass_udf("text", model=model, labels=LABELS).alias("g")
    discard(frame.limit(200).repartition(2).select("id", column))  # both workers load the model
    small = measure(lambda: discard(frame.limit(SMALL_PARTITION).coalesce(1).select("id", column)))
    path = str(work / "load.parquet")
    started = time.perf_counter()
    large = measure(lambda: frame.repartition(2).select("id", column).write.parquet(path))
    seconds = time.perf_counter() - started
    counts = F.count("*"), F.countDistinct("id"), F.count_if(F.col("g").isNull())
    rows_out, distinct, nulls = spark.read.parquet(path).agg(*counts).first()
    blank = int(source["text"].map(lambda t: not isinstance(t, str) or not t.strip()).sum())
    return {
        "rows_out": rows_out,
        "distinct_ids": distinct,
        "null_results": nulls,
        "blank_texts": blank * copies,
        "job_seconds": round(seconds, 1),
        "rows_per_s": round(LOAD_ROWS / seconds),
        "peak_MiB_10k": small["peak"],
        "peak_MiB_100k": large["peak"],
        "growth_MiB_10k": small["growth"],
        "growth_MiB_100k": large["growth"],
        "fresh_workers": small["fresh"] + large["fresh"],
    }


def _retry_job(spark, model: str, work: Path) -> dict[str, Any]:
    from pyspark.sql import functions as F

    from gliclass_pipelines import Classifier
    from gliclass_pipelines.spark.udf import gliclass_udf

    marks = work / "marks"
    marks.mkdir(parents=True)
    assert spark.sparkContext.master == "local[2,2]", "a failed task must be tried again"
    texts = [f"text number {i} about games, science and web libraries" for i in range(2000)]
    df = spark.createDataFrame(list(enumerate(texts)), "id long, text string").repartition(4, "id")
    flaky = df.mapInPandas(failing_once(str(marks)), df.schema)
    path = str(work / "retry.parquet")
    with arrow_batch_rows(spark, 100):
        flaky.select("id", gliclass_udf("text", model=model, labels=LABELS).alias("g")).write.parquet(path)
    back = spark.read.parquet(path)
    rows = back.collect()
    stats = back.agg(F.count("*"), F.countDistinct("id"), F.min("id"), F.max("id")).first()
    want = Classifier.load(model, device="cpu").classify(texts, LABELS)
    failed = sorted(p.name.split("-") for p in marks.iterdir())
    return {
        "failed_attempts": [f"partition {part}, attempt {attempt}" for part, attempt in failed],
        "rows": stats[0],
        "distinct_ids": stats[1],
        "min_id": stats[2],
        "max_id": stats[3],
        "mismatches": sum(not same(r.g, want[r.id]) for r in rows),
    }


def failing_once(marks: str):
    """A mapInPandas function: partition 1 raises on its first attempt, after yielding one batch."""

    def fail_first_attempt(batches):
        from pyspark import TaskContext

        context = TaskContext.get()
        for i, batch in enumerate(batches):
            if context.partitionId() == 1 and context.attemptNumber() == 0 and i == 1:
                Path(marks, f"{context.partitionId()}-{context.attemptNumber()}").touch()
                raise RuntimeError("injected failure on the first attempt")
            yield batch

    return fail_first_attempt


@contextmanager
def arrow_batch_rows(spark, rows: int) -> Iterator[None]:
    """Arrow batches of this many rows for one job on the shared session, then the session's own again."""
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    spark.conf.set(key, str(rows))
    try:
        yield
    finally:
        spark.conf.set(key, before)


def discard(df) -> None:
    df.write.format("noop").mode("overwrite").save()


def _status(pid: int) -> dict[str, int]:
    values = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(("VmHWM", "VmRSS")):
                key, value = line.split(":")
                values[key] = int(value.split()[0]) * 1024
    return values


def measure(job) -> dict[str, Any]:
    """Run a job; the largest peak RSS (and its growth over the RSS before the job) of a Python worker."""
    before = {}
    for pid in spark_python_workers():
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        before[pid] = _status(pid)["VmRSS"]
    job()
    peaks = {pid: _status(pid)["VmHWM"] for pid in spark_python_workers()}
    growth = {pid: peak - before.get(pid, 0) for pid, peak in peaks.items()}
    top = max(growth, key=growth.get)
    return {
        "peak": round(peaks[top] / MIB, 1),
        "growth": round(growth[top] / MIB, 1),
        "fresh": sum(pid not in before for pid in peaks),
    }
