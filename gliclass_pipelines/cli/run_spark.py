"""The Spark runner: spark.read -> classify_dataframe -> write.parquet into the temporary directory."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from gliclass_pipelines.cli.failures import RunnerError, check_model_early, short_error
from gliclass_pipelines.cli.summary import Summary, add_computed, stats_from_output, written_rows
from gliclass_pipelines.errors import GLiClassPipelinesError
from gliclass_pipelines.io.interrupts import signals_held

logger = logging.getLogger(__name__)
CORRUPT = "_corrupt_record"  # the column Spark adds for JSON lines it cannot parse
JVM_STOP_SECONDS = 15.0


def run(job: Any, temp: Path, summary: Summary) -> None:
    """spark.read -> classify_dataframe -> write.parquet(temp); Spark's own _SUCCESS is replaced at commit."""
    check_model_early(job)
    spark, created = spark_session(job)
    try:
        computed = _classify_into(spark, job, temp)
    except Exception as exc:
        if isinstance(exc, GLiClassPipelinesError):
            raise
        raise RunnerError(f"Spark failed: {short_error(exc)}") from exc
    except BaseException:  # SIGTERM or Ctrl-C, most likely inside a Py4J call
        if created:
            created = False
            stop_after_interrupt(spark)
        raise
    finally:
        if created:
            spark.stop()
    if computed is None:  # Spark Connect: no accumulators
        stats_from_output(job, temp, summary)
        summary.truncated = None
    else:
        add_computed(summary, computed, written_rows(temp))


def _classify_into(spark: Any, job: Any, temp: Path) -> Any:
    """Write the classified input into ``temp``; the run's counts (None without accumulators)."""
    from gliclass_pipelines.spark.udf import classify_dataframe

    df = read_spark(spark, job)
    labels_col = None
    if job.labels_column is not None:
        df, labels_col = spark_labels_column(df, job.labels_column)
    stats = _accumulator(spark)
    out = classify_dataframe(
        df,
        job.text_column,
        job.config,
        output_col=job.result_column,
        labels_col=labels_col,
        stats=stats,
        prompt_col=job.prompt_column,
        threshold_col=job.threshold_column,
    )
    if labels_col != job.labels_column and labels_col is not None:
        out = out.drop(labels_col)
    if job.provenance_column is not None:
        from pyspark.sql import functions as F

        out = out.withColumn(job.provenance_column, F.lit(job.config.fingerprint()))
    out.write.mode("append").parquet(str(temp))  # temp holds our marker
    return None if stats is None else stats.value


def stop_after_interrupt(spark: Any) -> None:
    """End the session this job started, after SIGTERM or Ctrl-C cut a Py4J call.

    The cut call leaves the gateway's connection out of step, so ``spark.stop()`` would fail with a Py4J
    error after a long wait. The JVM this process launched is ended instead (SIGTERM: Spark's shutdown
    hooks stop its Python workers and remove its scratch files; SIGKILL after JVM_STOP_SECONDS). A JVM
    this process did not launch (spark-submit, Spark Connect) is left to its launcher.
    """
    proc = getattr(getattr(getattr(spark, "_sc", None), "_gateway", None), "proc", None)
    if proc is None or proc.poll() is not None:
        return
    logger.info("stopping the Spark JVM (pid %d) after an interrupt", proc.pid)
    # Py4J threads still waiting on the JVM log its end as tracebacks; the interrupt is already reported.
    logging.getLogger("py4j").setLevel(logging.CRITICAL + 1)
    proc.terminate()
    try:
        proc.wait(timeout=JVM_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def spark_session(job: Any) -> tuple[Any, bool]:
    """The active SparkSession (then the options are not applied), or a new one that the job stops."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        logger.info("using the active SparkSession; --spark-master and --spark-conf are not applied")
        return active, False
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers need this Python's packages
    builder = SparkSession.builder.master(job.runner_options["spark_master"]).appName("gliclass-pipelines")
    for key, value in job.runner_options["spark_conf"].items():
        builder = builder.config(key, value)
    spark = None
    try:
        with signals_held():  # a JVM cut off while it starts would outlive this process
            spark = builder.getOrCreate()
    except BaseException:
        if spark is not None:
            stop_after_interrupt(spark)
        raise
    spark.sparkContext.setLogLevel("WARN")
    return spark, True


def read_spark(spark: Any, job: Any) -> Any:
    path = str(job.input)
    if job.input_format == "parquet":
        return spark.read.parquet(path)
    if job.input_format == "csv":  # RFC 4180: "" escapes a quote, quoted values may hold newlines
        return spark.read.options(header=True, escape='"', multiLine=True).csv(path)
    df = spark.read.json(path)
    order = [name for name in job.source.schema.names if name in df.columns]
    rest = [c for c in df.columns if c not in order and c != CORRUPT]  # a broken line: a row of nulls
    return df.select(*order, *rest)  # file order, not Spark's sorted


def spark_labels_column(df: Any, column: str) -> tuple[Any, str]:
    """Per-row labels as array<string>: as is, or split from 'a,b,c' text into a temporary column."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    if not isinstance(df.schema[column].dataType, StringType):
        return df, column
    split = F.filter(F.transform(F.split(F.col(column), ","), lambda x: F.trim(x)), lambda x: x != "")
    return df.withColumn("__gliclass_labels", split), "__gliclass_labels"


def _accumulator(spark: Any) -> Any:
    from gliclass_pipelines.spark.udf import stats_accumulator

    try:
        return stats_accumulator(spark)
    except GLiClassPipelinesError:
        return None
