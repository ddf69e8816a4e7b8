"""GLiClassTransformer on a real local SparkSession: inside a Pipeline, saved and loaded from disk (and in a
fresh SparkSession in another process), equal to gliclass_udf and to the in-process engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("pyspark")

pytest.register_assert_rewrite("integrations_support")
from integrations_support import LABELS, ROW_LABELS, TEXTS, assert_same, expected  # noqa: E402

from gliclass_pipelines.errors import ConfigError  # noqa: E402

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def frame(spark):
    rows = [(i, text, labels) for i, (text, labels) in enumerate(zip(TEXTS, ROW_LABELS, strict=True))]
    return spark.createDataFrame(rows, "id int, text string, row_labels array<string>").repartition(2)


def collect(df, column: str) -> list:
    return [row[column] for row in df.orderBy("id").collect()]


def test_saved_pipeline_equals_udf_and_engine(frame, tiny_checkpoint, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel

    from gliclass_pipelines.spark.ml import GLiClassTransformer
    from gliclass_pipelines.spark.udf import gliclass_udf

    model = str(tiny_checkpoint)
    stage = GLiClassTransformer(inputCol="text", outputCol="topics", model=model, labels=json.dumps(LABELS))
    stage.setParams(thresholds={"games": 0.3})
    fitted = Pipeline(stages=[stage]).fit(frame)
    fitted.write().overwrite().save(str(tmp_path / "pipeline"))
    loaded = PipelineModel.load(str(tmp_path / "pipeline"))

    taxonomy = {"labels": LABELS, "thresholds": {"games": 0.3}}
    from_disk = collect(loaded.transform(frame), "topics")
    from_udf = collect(
        frame.withColumn("topics", gliclass_udf("text", labels=taxonomy, model=model)), "topics"
    )
    assert from_disk == from_udf
    assert_same(from_disk, expected(model, TEXTS, taxonomy), "labels")
    assert loaded.stages[0].getTaxonomy() == stage.getTaxonomy()


@pytest.mark.parametrize("output", ["top", "scores"])
def test_output_kinds(frame, tiny_checkpoint, output):
    from gliclass_pipelines.spark.ml import GLiClassTransformer

    model = str(tiny_checkpoint)
    stage = GLiClassTransformer(model=model, labels=LABELS, output=output, multiLabel=False)
    got = collect(stage.transform(frame), "gliclass")
    assert_same(got, expected(model, TEXTS, output=output, multi_label=False), output)


def test_per_row_labels(frame, tiny_checkpoint):
    from gliclass_pipelines.spark.ml import GLiClassTransformer

    model = str(tiny_checkpoint)
    stage = GLiClassTransformer(model=model, labelsCol="row_labels", threshold=0.4)
    got = collect(stage.transform(frame), "gliclass")
    assert_same(got, expected(model, TEXTS, ROW_LABELS, threshold=0.4), "labels")


@pytest.mark.parametrize(
    "params",
    [
        {"output": "best"},
        {"threshold": 1.5},
        {"thresholds": {"games": -1}},
        {"labels": "[not json"},
        {"labels": []},
        {"multiLabel": "yes"},
        {"device": "gpu0"},
        {"batchTokens": 0},
        {"longText": "drop"},
        {"precision": "int4"},
    ],
)
def test_bad_params_raise_when_set(params):
    from gliclass_pipelines.spark.ml import GLiClassTransformer

    with pytest.raises(ConfigError):
        GLiClassTransformer(model="org/model", **params)
    with pytest.raises(ConfigError):
        GLiClassTransformer(model="org/model", labels=LABELS).setParams(**params)


@pytest.mark.parametrize(
    "params",
    [
        {"labels": LABELS},  # no model
        {"model": "org/model"},  # no labels
        {"model": "org/model", "labels": LABELS, "labelsCol": "row_labels"},
        {"model": "org/model", "labelsCol": "row_labels", "thresholds": {"games": 0.2}},
        {"model": "org/model", "labels": LABELS, "inputCol": "missing"},
        {"model": "org/model", "labels": LABELS, "thresholds": {"sport": 0.2}},  # not a label
        {"model": "org/model", "labels": LABELS, "precision": "int8", "device": "cuda"},  # int8 is CPU only
    ],
)
def test_incomplete_params_raise_on_the_driver(frame, params):
    from gliclass_pipelines.spark.ml import GLiClassTransformer

    with pytest.raises(ConfigError):
        GLiClassTransformer(**params).transform(frame)


@pytest.mark.slow
def test_pipeline_loads_in_another_session(frame, tiny_checkpoint, tmp_path):
    """A PipelineModel saved here gives identical rows in a fresh SparkSession in another process."""
    from pyspark.ml import Pipeline

    from gliclass_pipelines.spark.ml import GLiClassTransformer

    model = str(tiny_checkpoint)
    stage = GLiClassTransformer(model=model, labels=LABELS, output="scores")
    fitted = Pipeline(stages=[stage]).fit(frame)
    fitted.save(str(tmp_path / "pipeline"))
    here = collect(fitted.transform(frame), "gliclass")
    frame.write.parquet(str(tmp_path / "rows"))
    script = textwrap.dedent(
        f"""
        import json, sys
        from pyspark.ml import PipelineModel
        from pyspark.sql import SparkSession
        spark = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false").getOrCreate()
        rows = PipelineModel.load({str(tmp_path / "pipeline")!r}).transform(
            spark.read.parquet({str(tmp_path / "rows")!r})).orderBy("id").collect()
        json.dump([None if r.gliclass is None else dict(r.gliclass) for r in rows], sys.stdout)
        spark.stop()
        """
    )
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    there = json.loads(run.stdout)
    assert there == [None if r is None else dict(r) for r in here]
