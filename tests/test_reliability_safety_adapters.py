"""Hostile model URIs in the Spark and Beam adapters: a secret in a model URI's userinfo or query never
shows in a repr, a PredictionResult.model_id, a metric name, a dead letter or a log line (issue 11.4)."""

from __future__ import annotations

import logging

import pytest
from beam_support import collected, sink
from memory_fs import put_in_memory_fs
from reliability_support import ATTACKS, case

from gliclass_pipelines.model.sources import CACHE_ENV

pytest_plugins = ["reliability_support"]

LABELS = ["games", "science", "networking"]
FIRST = "memory://user:tok-secret@host/adapters/first?sig=SIGSECRET"
SECOND = "memory://user:tok-secret@host/adapters/second?sig=SIGSECRET"


def assert_no_secret(shown: list[str]) -> None:
    assert shown
    for text in shown:
        assert "secret" not in text.lower(), text


@case(
    ATTACKS,
    "Beam: GLiClassModelHandler and ClassifyText on memory://user:token@host/...?sig=... checkpoints, "
    "run for real on FnApiRunner, with a model update (side input) to a second such URI and bad elements",
    "no secret in repr(handler), any PredictionResult.model_id, metric name, dead letter or log line; "
    "the ids show the redacted URIs",
)
def test_beam_never_shows_a_model_uri_secret(checkpoint_factory, tmp_path, monkeypatch, caplog):
    beam = pytest.importorskip("apache_beam")
    from apache_beam.ml.inference.base import ModelMetadata, RunInference
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from gliclass_pipelines.beam.transforms import ClassifyText, GLiClassModelHandler

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    caplog.set_level(logging.DEBUG)
    put_in_memory_fs(checkpoint_factory(), FIRST)
    put_in_memory_fs(checkpoint_factory(seed=13), SECOND)
    handler = GLiClassModelHandler(FIRST, LABELS)
    elements = ["a small arcade game", "a network daemon", 42]
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        update = pipeline | "Update" >> beam.Create([ModelMetadata(model_id=SECOND, model_name="second")])
        texts = pipeline | "Texts" >> beam.Create(elements)
        sink(texts | RunInference(handler, model_metadata_pcoll=update), tmp_path / "updated", "SinkUpdated")
        classified = texts | ClassifyText(FIRST, LABELS)
        sink(classified.results, tmp_path / "results", "SinkResults")
        sink(classified.dead_letters, tmp_path / "dead", "SinkDead")
    updated, results = collected(tmp_path / "updated"), collected(tmp_path / "results")
    dead = collected(tmp_path / "dead")
    assert len(updated) == 3 and len(results) == 2 and len(dead) == 1
    metrics = pipeline.result.metrics().query()
    names = [f"{m.key.metric.namespace}/{m.key.metric.name}" for kind in metrics.values() for m in kind]
    ids = [r.model_id for r in updated + results]
    ours = ("gliclass_pipelines", "apache_beam")
    logs = [r.getMessage() for r in caplog.records if r.name.startswith(ours)]
    assert_no_secret([repr(handler), repr(handler.config), *ids, *names, *map(str, dead), *logs])
    assert any("model updated to memory://***@host" in line for line in logs)
    assert {r.model_id for r in updated} == {"memory://***@host/adapters/second?***"}
    assert {r.model_id for r in results} == {"memory://***@host/adapters/first?***"}


@case(
    ATTACKS,
    "Spark: gliclass_udf and classify_dataframe built with memory://user:token@host/...?sig=... and "
    "refused settings (a per-row config without labels_col, an unknown setting)",
    "no secret in the config's repr, the Column's string or any ConfigError message",
)
def test_spark_driver_never_shows_a_model_uri_secret(spark):
    from gliclass_pipelines import ConfigError
    from gliclass_pipelines.core.config import ClassifyConfig
    from gliclass_pipelines.spark.udf import gliclass_udf, gliclass_udf_from_config

    config = ClassifyConfig.from_settings(FIRST, LABELS)
    shown = [repr(config), str(config), str(gliclass_udf("text", model=FIRST, labels=LABELS))]
    for attempt in (
        lambda: gliclass_udf_from_config(config, "text", "labels"),
        lambda: gliclass_udf("text", model=FIRST, labels=LABELS, no_such_setting=1),
        lambda: gliclass_udf("text", model=FIRST, labels=LABELS, threshold=2),
    ):
        with pytest.raises(ConfigError) as error:
            attempt()
        shown.append(str(error.value))
    assert_no_secret(shown)
    assert "memory://***@host/adapters/first?***" in repr(config)
