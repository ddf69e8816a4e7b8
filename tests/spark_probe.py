"""Test-only: a pandas UDF reporting where and how each row would be classified (pid, partition, GPU,
device, threads, registry loads), through the adapter's own per-task setup (spark.task_model)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pandas as pd

PROBE_DDL = (
    "struct<pid:int,partition:int,gpu:string,requested_device:string,device:string,"
    "threads:int,load_count:int>"
)


def probe_column(text_col: str, **settings: Any) -> Any:
    """A Column of probe structs for the job gliclass_udf(text_col, **settings) would run."""
    from pyspark.sql import functions as F

    from gliclass_pipelines.core.config import ClassifyConfig

    config = ClassifyConfig.from_settings(settings.pop("model"), settings.pop("labels"), **settings)

    def probe(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:  # struct: yields DataFrames
        from gliclass_pipelines.model.sources import load_count
        from gliclass_pipelines.spark.tasks import task_model

        found = None
        for texts in batches:
            found = found or task_model(config)
            row = {
                "pid": os.getpid(),
                "partition": found.task.partition,
                "gpu": found.task.gpu,
                "requested_device": found.task.requested_device,
                "device": str(found.classifier.device),
                "threads": found.config.num_threads,
                "load_count": load_count(),
            }
            yield pd.DataFrame([row] * len(texts), columns=list(row))

    return F.pandas_udf(probe, PROBE_DDL)(F.col(text_col))
