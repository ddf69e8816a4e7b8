"""pyspark.ml: GLiClass as a Pipeline stage, saved with the pipeline and loaded back.

    .venv/bin/python examples/spark_ml_pipeline.py [PIPELINE_DIR]   # GLICLASS_MODEL picks the model

The stage's Params (model source, taxonomy, output kind...) are its whole state, so the saved
PipelineModel is a few small JSON files; each executor loads the model itself when it runs.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pyspark.ml import Pipeline, PipelineModel
from pyspark.sql import DataFrame, SparkSession

from gliclass_pipelines.spark.ml import GLiClassTransformer

MODEL = os.environ.get("GLICLASS_MODEL") or "knowledgator/gliclass-edge-v3.0"
DATA = Path(__file__).resolve().parent / "data" / "sample.jsonl"
LABELS = ["games", "science", "audio", "graphics", "networking", "security", "databases", "machine learning"]


def main(spark: SparkSession, pipeline_dir: str) -> DataFrame:
    df = spark.read.json(str(DATA))
    stage = GLiClassTransformer(
        inputCol="text",
        outputCol="topic",
        model=MODEL,
        labels=LABELS,
        output="top",
        thresholds={"games": 0.7},
    )
    Pipeline(stages=[stage]).fit(df).write().overwrite().save(pipeline_dir)
    return PipelineModel.load(pipeline_dir).transform(df)


if __name__ == "__main__":
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers need this Python's packages
    session = SparkSession.builder.master("local[2]").appName("gliclass-spark-ml").getOrCreate()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tmp, "pipeline")
            main(session, target).select("id", "topic.label", "topic.score").show(n=20, truncate=60)
    finally:
        session.stop()
