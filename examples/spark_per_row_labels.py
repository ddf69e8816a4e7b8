"""Spark with per-row labels: each row is classified against its own candidate labels.

    .venv/bin/python examples/spark_per_row_labels.py   # GLICLASS_MODEL picks the model

Here Debian packages and PyPI projects get different candidates; the labels column is array<string>.
``output="top"`` keeps only the best label, whatever the threshold.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from gliclass_pipelines.spark import classify_dataframe

MODEL = os.environ.get("GLICLASS_MODEL") or "knowledgator/gliclass-edge-v3.0"
DATA = Path(__file__).resolve().parent / "data" / "sample.jsonl"
DEBIAN = ["game", "scientific software", "multimedia", "network service", "system administration"]
PYPI = ["python library", "command-line tool", "web application", "data science", "teaching material"]


def main(spark: SparkSession) -> DataFrame:
    debian, pypi = F.array(*map(F.lit, DEBIAN)), F.array(*map(F.lit, PYPI))
    df = spark.read.json(str(DATA))
    df = df.withColumn("candidates", F.when(F.col("source") == "debian", debian).otherwise(pypi))
    return classify_dataframe(
        df, "text", model=MODEL, labels_col="candidates", output="top", output_col="best"
    )


def show(best: DataFrame) -> None:
    score = F.round("best.score", 2).alias("score")
    best.select("id", "source", F.col("best.label").alias("label"), score).show(n=20, truncate=False)


if __name__ == "__main__":
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers need this Python's packages
    session = SparkSession.builder.master("local[2]").appName("gliclass-per-row-labels").getOrCreate()
    try:
        show(main(session))
    finally:
        session.stop()
