"""Classify texts inside Spark: :func:`gliclass_udf` (a Column) and :func:`classify_dataframe`.

The driver only builds and validates a :class:`~gliclass_pipelines.config.ClassifyConfig` (no model,
no SparkContext, so it works under Spark Connect too). The UDF is an iterator-of-Series pandas UDF
whose closure holds that config and nothing else; on the executor each Python worker takes the model
from the per-process registry, so a reused worker loads it once per (model, device, dtype).

GPUs: when Spark assigns a task a GPU (``spark.task.resource.gpu.amount``), the task's first address
``N`` becomes the engine device ``cuda:N``, unless ``device`` names one explicitly. Threads: the model
uses ``num_threads``, else the task's CPUs (``spark.task.cpus``), so parallel tasks do not
oversubscribe an executor's cores.

Batches: Spark hands the UDF Arrow batches of ``spark.sql.execution.arrow.maxRecordsPerBatch`` rows
(10,000 by default). Each batch is sorted by length and cut into forward passes of at most
``batch_tokens`` padded tokens, so the Arrow batch should hold many forward passes' worth of rows.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark import TaskContext
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType

from gliclass_pipelines.config import ClassifyConfig
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.results import SPARK_DDL

logger = logging.getLogger(__name__)

__all__ = ["DEBUG_DDL", "build_config", "classify_dataframe", "gliclass_udf", "udf_column"]

# Test-only output: where and how each row was classified.
DEBUG_DDL = (
    "struct<pid:int,partition:int,gpu:string,requested_device:string,device:string,"
    "threads:int,load_count:int>"
)

_warned_gpus: set[str] = set()


def gliclass_udf(
    text_col: str | Column,
    *,
    model: str,
    labels: Any = None,
    labels_col: str | Column | None = None,
    threshold: float = 0.5,
    multi_label: bool = True,
    output: str = "labels",
    device: str = "auto",
    dtype: str = "auto",
    long_text: str = "truncate",
    batch_tokens: int | None = None,
    max_length: int | None = None,
    num_threads: int | None = None,
    _debug: bool = False,
    **options: Any,
) -> Column:
    """A Column classifying `text_col` against `labels` (shared) or the array<string> `labels_col`.

    output="labels" gives ``array<struct<label,score>>`` (the labels over threshold, best first),
    "top" ``struct<label,score>`` and "scores" ``map<string,float>``. A null text gives null.
    Raises ConfigError at once, on the driver, for a bad model string, taxonomy or option.
    """
    config = build_config(
        model=model,
        labels=labels,
        labels_col=labels_col,
        threshold=threshold,
        multi_label=multi_label,
        output=output,
        device=device,
        dtype=dtype,
        long_text=long_text,
        batch_tokens=batch_tokens,
        max_length=max_length,
        num_threads=num_threads,
        **options,
    )
    return udf_column(config, text_col, labels_col, debug=_debug)


def build_config(*, labels_col: Any = None, **settings: Any) -> ClassifyConfig:
    """The validated job description; keyword arguments as in :func:`gliclass_udf`."""
    if labels_col is not None and settings.get("labels") is not None:
        raise ConfigError("give either labels (one taxonomy for every row) or labels_col (per row), not both")
    fields = set(ClassifyConfig.__dataclass_fields__) - {"options", "per_row_labels"}
    options = {k: settings.pop(k) for k in list(settings) if k not in fields}  # ClassifyConfig checks them
    return ClassifyConfig(per_row_labels=labels_col is not None, options=options, **settings)


def udf_column(
    config: ClassifyConfig,
    text_col: str | Column,
    labels_col: str | Column | None = None,
    *,
    debug: bool = False,
) -> Column:
    """Apply the pandas UDF for `config` to the given columns."""
    if config.per_row_labels != (labels_col is not None):
        raise ConfigError(
            "a per-row labels config needs labels_col, and a shared-labels config must not get one"
        )
    columns = [_column(text_col, "text_col")]
    if labels_col is not None:
        columns.append(_column(labels_col, "labels_col"))
    result = _pandas_udf(config, debug)(*columns)
    if config.output == "top" and not debug:
        result = F.get(result, 0)  # the UDF returns [top] or null: a null struct needs an array around it
    return result.alias("gliclass")


def classify_dataframe(
    df: DataFrame,
    text_col: str,
    *,
    output_col: str = "gliclass",
    labels_col: str | None = None,
    **kwargs: Any,
) -> DataFrame:
    """`df` with a column `output_col` of results; other keyword arguments as in :func:`gliclass_udf`."""
    _check_column_type(df, text_col, StringType(), "text_col")
    if labels_col is not None:
        _check_column_type(df, labels_col, ArrayType(StringType()), "labels_col")
    return df.withColumn(output_col, gliclass_udf(text_col, labels_col=labels_col, **kwargs))


def _column(col: Any, name: str) -> Column:
    if isinstance(col, str):
        return F.col(col)
    if isinstance(col, Column):
        return col
    raise ConfigError(f"{name} must be a column name or a Column, got {type(col).__name__}")


def _check_column_type(df: DataFrame, name: Any, expected: Any, what: str) -> None:
    if not isinstance(name, str):
        return
    if name not in df.columns:
        raise ConfigError(f"{what} {name!r} is not a column of the DataFrame; it has {', '.join(df.columns)}")
    actual = df.schema[name].dataType
    if actual.simpleString() != expected.simpleString():
        raise ConfigError(f"{what} {name!r} must be {expected.simpleString()}, got {actual.simpleString()}")


def _pandas_udf(config: ClassifyConfig, debug: bool) -> Any:
    """The pandas UDF. Its closure holds only `config` and `debug`: both small and picklable."""
    if debug:
        ddl = DEBUG_DDL
    else:
        ddl = SPARK_DDL["labels"] if config.output == "top" else SPARK_DDL[config.output]

    if config.per_row_labels:

        def gliclass(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.Series]:
            yield from classify_batches(config, batches, debug)

    else:

        def gliclass(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
            yield from classify_batches(config, ((texts, None) for texts in batches), debug)

    return F.pandas_udf(gliclass, ddl)


# --------------------------------------------------------------------------------------------------------
# Executor side


@dataclass(frozen=True)
class TaskResources:
    """What Spark gave the running task: a GPU address (or None), and its CPU count."""

    gpu: str | None
    cpus: int | None
    partition: int | None

    @classmethod
    def current(cls) -> TaskResources:
        ctx = TaskContext.get()
        if ctx is None:
            return cls(None, None, None)
        info = ctx.resources().get("gpu")
        gpu = info.addresses[0] if info is not None and info.addresses else None
        return cls(gpu, ctx.cpus(), ctx.partitionId())

    @property
    def requested_device(self) -> str | None:
        return None if self.gpu is None else f"cuda:{self.gpu}"


def engine_device(gpu: str | None) -> str | None:
    """cuda:<gpu> when this worker's CUDA can use the address Spark assigned; else None (the default)."""
    if gpu is None:
        return None
    import torch

    if torch.cuda.is_available() and gpu.isdigit() and int(gpu) < torch.cuda.device_count():
        return f"cuda:{gpu}"
    if gpu not in _warned_gpus:
        _warned_gpus.add(gpu)
        logger.warning(
            "Spark assigned GPU %s to this task, but CUDA cannot use it in this worker "
            "(CUDA available: %s); using the default device instead",
            gpu,
            torch.cuda.is_available(),
        )
    return None


def classify_batches(
    config: ClassifyConfig, batches: Iterator[tuple[pd.Series, pd.Series | None]], debug: bool = False
) -> Iterator[Any]:
    """Classify each Arrow batch of one task; yield a Series (or a DataFrame for the debug struct)."""
    task = TaskResources.current()
    device = engine_device(task.gpu)
    if config.num_threads is None and task.cpus:
        config = config.with_(num_threads=task.cpus)
    totals: dict[str, int] = {"rows": 0, "null_inputs": 0, "failed": 0}
    for texts, row_labels in batches:
        labels = None if row_labels is None else row_labels.tolist()
        records, out = config.classify(texts.tolist(), labels, engine_device=device)
        for name in totals:
            totals[name] += out.stats.get(name, 0)
        yield _debug_frame(config, task, device, len(records)) if debug else _series(records, config.output)
    if totals["failed"]:
        logger.warning(
            "partition %s: %d of %d rows gave null results (see the warnings above)",
            task.partition,
            totals["failed"],
            totals["rows"],
        )
    logger.info(
        "partition %s: classified %d rows (%d null texts)",
        task.partition,
        totals["rows"],
        totals["null_inputs"],
    )


def _series(records: list[Any], output: str) -> pd.Series:
    if output == "top":
        records = [None if r is None else [r] for r in records]
    return pd.Series(records, dtype=object)


def _debug_frame(config: ClassifyConfig, task: TaskResources, device: str | None, rows: int) -> pd.DataFrame:
    from gliclass_pipelines.loading import load_count

    row = {
        "pid": os.getpid(),
        "partition": task.partition,
        "gpu": task.gpu,
        "requested_device": task.requested_device,
        "device": str(config.classifier(device).device),
        "threads": config.num_threads,
        "load_count": load_count(),
    }
    return pd.DataFrame([row] * rows, columns=list(row))
