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

__all__ = ["classify_dataframe", "gliclass_udf", "gliclass_udf_from_config"]

_warned_gpus: set[str] = set()


def gliclass_udf(
    text_col: str | Column,
    *,
    model: str,
    labels: Any = None,
    labels_col: str | Column | None = None,
    **settings: Any,
) -> Column:
    """A Column classifying `text_col` against `labels` (shared) or the array<string> `labels_col`.

    ``settings`` are :class:`~gliclass_pipelines.config.ClassifyConfig`'s (threshold, multi_label,
    output, device, dtype, long_text, batch_tokens, max_length, num_threads) and Classifier.run options.
    output="labels" gives ``array<struct<label,score>>`` (the labels over threshold, best first),
    "top" ``struct<label,score>`` and "scores" ``map<string,float>``. A null text gives null.
    Raises ConfigError at once, on the driver, for a bad model string, taxonomy or setting.
    """
    config = _config(model, labels, labels_col, settings)
    return gliclass_udf_from_config(config, text_col, labels_col)


def gliclass_udf_from_config(
    config: ClassifyConfig, text_col: str | Column, labels_col: str | Column | None = None
) -> Column:
    """The Column for an existing ClassifyConfig (per-row labels come from `labels_col`)."""
    if config.per_row_labels != (labels_col is not None):
        raise ConfigError(
            "a per-row labels config needs labels_col, and a shared-labels config must not get one"
        )
    columns = [_column(text_col, "text_col")]
    if labels_col is not None:
        columns.append(_column(labels_col, "labels_col"))
    result = _pandas_udf(config)(*columns)
    if config.output == "top":
        result = F.get(result, 0)  # the UDF returns [top] or null: a null struct needs an array around it
    return result.alias("gliclass")


def classify_dataframe(
    df: DataFrame,
    text_col: str,
    config: ClassifyConfig | None = None,
    *,
    output_col: str = "gliclass",
    labels_col: str | None = None,
    **settings: Any,
) -> DataFrame:
    """`df` with a column `output_col` of results, for `config` or the keyword settings of
    :func:`gliclass_udf` (``model=``, ``labels=``...), not both."""
    _check_column_type(df, text_col, StringType(), "text_col")
    if labels_col is not None:
        _check_column_type(df, labels_col, ArrayType(StringType()), "labels_col")
    if config is None:
        config = _config(settings.pop("model", None), settings.pop("labels", None), labels_col, settings)
    elif settings:
        raise ConfigError(f"give a config or settings, not both (got {', '.join(sorted(settings))})")
    return df.withColumn(output_col, gliclass_udf_from_config(config, text_col, labels_col))


def _config(model: Any, labels: Any, labels_col: Any, settings: dict[str, Any]) -> ClassifyConfig:
    if labels_col is not None and labels is not None:
        raise ConfigError("give either labels (one taxonomy for every row) or labels_col (per row), not both")
    return ClassifyConfig.from_settings(model, labels, per_row_labels=labels_col is not None, **settings)


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


def _pandas_udf(config: ClassifyConfig) -> Any:
    """The pandas UDF. Its closure holds only `config`: small and picklable."""
    ddl = SPARK_DDL["labels"] if config.output == "top" else SPARK_DDL[config.output]

    if config.per_row_labels:

        def gliclass(batches: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.Series]:
            yield from classify_batches(config, batches)

    else:

        def gliclass(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
            yield from classify_batches(config, ((texts, None) for texts in batches))

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


@dataclass(frozen=True)
class TaskModel:
    """What one task classifies with: its config (threads set), its device and the loaded model."""

    config: ClassifyConfig
    task: TaskResources
    device: str | None
    classifier: Any


def task_model(config: ClassifyConfig) -> TaskModel:
    """Resolve the task's device and threads and take the model from the registry: once per task."""
    task = TaskResources.current()
    device = engine_device(task.gpu)
    if config.num_threads is None and task.cpus:
        config = config.with_(num_threads=task.cpus)
    return TaskModel(config, task, device, config.classifier(device))


def classify_batches(
    config: ClassifyConfig, batches: Iterator[tuple[pd.Series, pd.Series | None]]
) -> Iterator[Any]:
    """Classify each Arrow batch of one task into a Series of records, in the batch's row order."""
    found = task_model(config)
    totals: dict[str, int] = {"rows": 0, "null_inputs": 0, "failed": 0}
    for texts, row_labels in batches:
        labels = None if row_labels is None else row_labels.tolist()
        records, out = found.config.classify(texts.tolist(), labels, classifier=found.classifier)
        for name in totals:
            totals[name] += out.stats.get(name, 0)
        yield _series(records, config.output)
    if found is None:
        return
    logger.info(
        "partition %s: classified %d rows (%d null inputs, %d failed)",
        found.task.partition,
        totals["rows"],
        totals["null_inputs"],
        totals["failed"],
    )


def _series(records: list[Any], output: str) -> pd.Series:
    if output == "top":
        records = [None if r is None else [r] for r in records]
    return pd.Series(records, dtype=object)
