"""The executor side of the Spark UDF: each task's resources, device and model, and its batches classified
in order, one result per row.

GPUs: when Spark assigns a task a GPU (``spark.task.resource.gpu.amount``), the task's first address
``N`` becomes the engine device ``cuda:N``, unless ``device`` names one explicitly. Threads: the model
uses ``num_threads``, else the task's CPUs (``spark.task.cpus``), so parallel tasks do not
oversubscribe an executor's cores.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pyspark import TaskContext

from gliclass_pipelines.core.config import ClassifyConfig
from gliclass_pipelines.core.outcomes import RunStats, log_failed
from gliclass_pipelines.errors import GLiClassPipelinesError

logger = logging.getLogger(__name__)

_warned_gpus: set[str] = set()


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
    config: ClassifyConfig,
    batches: Iterator[tuple[pd.Series, dict[str, pd.Series]]],
    stats: Any = None,
) -> Iterator[pd.Series]:
    """Classify each Arrow batch of one task (its texts, and its per-row "labels", "prompt" and "threshold"
    columns by name) into a Series of records, in the batch's row order.

    The task's RunStats are logged and, with a `stats` accumulator, added to it once the task ends.
    """
    found = None
    total = RunStats()
    for texts, cells in batches:
        found = found or task_model(config)
        rows = texts.tolist()
        identity = row_identity(rows)
        given = {name: column.tolist() for name, column in cells.items()}
        records, out = found.config.classify(
            rows,
            given.get("labels"),
            classifier=found.classifier,
            row_prompts=given.get("prompt"),
            row_thresholds=given.get("threshold"),
        )
        log_failed(out.outcomes, offset=total.rows)
        total.add(out.stats)
        series = _series(records, config.output)
        check_rows(identity, rows, out.outcomes, series)
        yield series
    if found is None:
        return
    logger.info(
        "partition %s: classified %d rows (%d null inputs, %d failed)",
        found.task.partition,
        total.rows,
        total.null_inputs,
        total.failed,
    )
    if stats is not None:
        stats.add(total)


def row_identity(texts: list[Any]) -> list[tuple[int, int, int]]:
    """Each row's identity: its position, its text's length (-1: not a string) and a CRC of the text."""
    return [
        (i, len(t), zlib.crc32(t.encode("utf-8", "surrogatepass"))) if isinstance(t, str) else (i, -1, 0)
        for i, t in enumerate(texts)
    ]


def check_rows(
    identity: list[tuple[int, int, int]], texts: list[Any], outcomes: list[Any], series: pd.Series
) -> None:
    """Refuse to hand Spark results that are not exactly one per given row, in order: the rows' count
    and positions, their texts (unchanged since they were read), and each result's agreement with its
    own row's outcome (a null input has no result; a failed row has none; an ok row has one)."""
    n = len(identity)
    problems = []
    if not (len(texts) == len(outcomes) == len(series) == n):
        problems.append(f"{n} rows in, {len(outcomes)} outcomes and {len(series)} results out")
    elif list(series.index) != list(range(n)) or row_identity(texts) != identity:
        problems.append("the results' positions or the rows' texts changed during classification")
    else:
        for (i, length, _), outcome, record in zip(identity, outcomes, series):
            if (length < 0 and outcome.is_ok) or (not outcome.is_ok and record is not None):
                problems.append(f"row {i}: outcome {outcome.kind} does not match its input or result")
                break
    if problems:
        raise GLiClassPipelinesError(
            f"internal error, no results returned for this batch: {problems[0]}; please report it"
        )


def _series(records: list[Any], output: str) -> pd.Series:
    if output == "top":
        records = [None if r is None else [r] for r in records]
    return pd.Series(records, dtype=object)
