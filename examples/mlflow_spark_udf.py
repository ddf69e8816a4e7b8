"""MLflow: log a GLiClass checkpoint with its taxonomy as a pyfunc model, then run it with
``mlflow.pyfunc.load_model`` and as a Spark UDF through ``mlflow.pyfunc.spark_udf``.

    .venv/bin/python examples/mlflow_spark_udf.py     # GLICLASS_MODEL picks the model

Without MLFLOW_TRACKING_URI it logs to a file store in a temporary folder (mlflow-skinny has no SQL
store; MLFLOW_ALLOW_FILE_STORE=true lets MLflow 3 use the file store). spark_udf returns JSON text
(result_type="string", model_config={"result_format": "json"}); parse_json makes it the column
gliclass_udf gives.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

MODEL = os.environ.get("GLICLASS_MODEL") or "knowledgator/gliclass-edge-v3.0"
DATA = Path(__file__).resolve().parent / "data" / "sample.jsonl"
LABELS = ["games", "science", "audio", "graphics", "networking", "security", "databases", "machine learning"]


def main(spark: SparkSession) -> DataFrame:
    import mlflow

    from gliclass_pipelines.mlflow_flavor import log_model, parse_json

    with mlflow.start_run():
        info = log_model(MODEL, "gliclass", labels=LABELS, output="labels", threshold=0.5)

    model = mlflow.pyfunc.load_model(info.model_uri)
    print(model.predict(pd.DataFrame({"text": ["A fast arcade game with lasers", None]})).tolist())

    udf = mlflow.pyfunc.spark_udf(
        spark,
        info.model_uri,
        result_type="string",
        env_manager="local",
        model_config={"result_format": "json"},
    )
    df = spark.read.json(str(DATA))
    return df.withColumn("labels", parse_json(udf("text"), "labels"))


if __name__ == "__main__":
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers need this Python's packages
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("MLFLOW_TRACKING_URI", Path(tmp, "mlruns").as_uri())
        session = SparkSession.builder.master("local[2]").appName("gliclass-mlflow").getOrCreate()
        try:
            main(session).select("id", "labels").show(n=20, truncate=90)
        finally:
            session.stop()
