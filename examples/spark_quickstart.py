"""Spark quickstart: add a column of labels to a DataFrame with ``withColumn``.

    .venv/bin/python examples/spark_quickstart.py      # GLICLASS_MODEL picks the model

Each Spark task's Python worker loads the model once and classifies whole Arrow batches.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from gliclass_pipelines.spark import gliclass_udf

MODEL = os.environ.get("GLICLASS_MODEL") or "knowledgator/gliclass-edge-v3.0"
DATA = Path(__file__).resolve().parent / "data" / "sample.jsonl"
LABELS = ["games", "science", "audio", "graphics", "networking", "security", "databases", "machine learning"]


def main(spark: SparkSession) -> DataFrame:
    df = spark.read.json(str(DATA))
    return df.withColumn("labels", gliclass_udf("text", model=MODEL, labels=LABELS, threshold=0.5))


if __name__ == "__main__":
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers need this Python's packages
    session = SparkSession.builder.master("local[2]").appName("gliclass-quickstart").getOrCreate()
    try:
        main(session).select("id", "labels").show(n=20, truncate=90)
    finally:
        session.stop()
