"""The Beam adapter on real runners: FnApiRunner, BundleBasedDirectRunner (TestStream) and a multi-process
DirectRunner. Every expected value is computed by the core (Classifier / ClassifyConfig) on the same texts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

beam = pytest.importorskip("apache_beam")

from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner  # noqa: E402
from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # noqa: E402
from apache_beam.testing.test_stream import TestStream as Stream  # noqa: E402
from apache_beam.transforms import window  # noqa: E402
from beam_support import collected, sink  # noqa: E402

from gliclass_pipelines import Classifier, ConfigError  # noqa: E402
from gliclass_pipelines.beam import transforms as gbeam  # noqa: E402
from gliclass_pipelines.beam.transforms import (  # noqa: E402
    ClassifyText,
    GLiClassDoFn,
    GLiClassModelHandler,
    batching_kwargs,
)
from gliclass_pipelines.core.config import ClassifyConfig  # noqa: E402
from gliclass_pipelines.model.sources import load_count  # noqa: E402

pytestmark = pytest.mark.beam

LABELS = ["libraries", "games", "science", "networking"]
ASK = "Which kind of software package is this?"
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------------
# helpers


def assert_same(got, want) -> None:
    """Same labels, same scores up to float noise (batch composition differs between the two paths)."""
    if want is None:
        assert got is None
        return
    assert [x["label"] for x in got] == [x["label"] for x in want]
    for g, w in zip(got, want):
        assert g["score"] == pytest.approx(w["score"], abs=1e-5)


def gliclass_metrics(result) -> dict:
    found = {}
    metrics = result.metrics().query()
    for item in metrics["counters"] + metrics["distributions"]:
        if item.key.metric.namespace == "gliclass":
            name = item.key.metric.name
            value = item.committed
            found[name] = value if isinstance(value, int) else (value.sum, value.count, value.max)
    return found


@pytest.fixture(scope="module")
def texts(debian_texts) -> list[str]:
    return debian_texts[:60]


# ------------------------------------------------------------------------------------------------------
# construction


def test_import_gliclass_pipelines_does_not_import_beam():
    code = "import sys, gliclass_pipelines; print('apache_beam' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"labels": ["a", ""]},
        {"labels": ["a", "a"]},
        {"labels": ["a"], "threshold": 1.5},
        {"labels": ["a"], "device": "gpu"},
        {"labels": ["a"], "output": "probabilities"},
        {"labels": None, "labels_field": None},
        {"labels": ["a"], "min_batch_tokens": 0},
        {"labels": ["a"], "min_batch_tokens": 4096, "max_batch_tokens": 1024},
        {"labels": ["a"], "max_batch_size": 8, "max_batch_tokens": 1024},
        {"labels": ["a"], "model_copies": 0},
        {"labels": ["a"], "max_batch_duration_secs": "1"},
        {"labels": ["a"], "max_batch_duration_secs": float("nan")},
        {"labels": ["a"], "max_batch_duration_secs": float("inf")},
        {"labels": ["a"], "max_batch_duration_secs": True},
        {"labels": ["a"], "text_field": 3},
        {"labels": ["a"], "text_field": ""},
        {"labels": ["a"], "labels_field": ["x"]},
        {"labels": ["a"], "prompt_field": ""},
        {"labels": ["a"], "threshold_field": 0.5},
        {"labels": ["a"], "thresold": 0.3},
    ],
)
def test_bad_options_fail_at_construction(tiny_checkpoint, kwargs):
    labels = kwargs.pop("labels")
    with pytest.raises(ConfigError):
        GLiClassModelHandler(tiny_checkpoint, labels, **kwargs)


def test_from_config_refuses_unknown_beam_arguments(tiny_checkpoint):
    config = ClassifyConfig(str(tiny_checkpoint), LABELS)
    with pytest.raises(ConfigError, match="unknown Beam argument.*max_batch_tokenz"):
        GLiClassModelHandler.from_config(config, max_batch_tokenz=5)
    assert ClassifyText.from_config(config, text_field="body").handler.text_field == "body"
    assert GLiClassDoFn.from_config(config).handler.config == config


def test_bad_model_string_fails_at_construction():
    with pytest.raises(ConfigError):
        GLiClassModelHandler("not a model id!", LABELS)


def test_construction_loads_nothing_and_keeps_device_auto(checkpoint_factory):
    path = checkpoint_factory(seed=11)
    before = load_count()
    handler = GLiClassModelHandler(path, LABELS)
    ClassifyText(path, LABELS)
    GLiClassDoFn(path, LABELS)
    assert load_count() == before
    assert handler.config.device == "auto"
    assert handler.load_model().device.type == "cpu"  # resolved here, on the "worker"
    assert load_count() == before + 1


def test_batching_kwargs_weigh_elements_by_tokens(tiny_checkpoint):
    handler = GLiClassModelHandler(tiny_checkpoint, LABELS, min_batch_tokens=300, max_batch_tokens=5000)
    kwargs = handler.batch_elements_kwargs()
    assert (kwargs["min_batch_size"], kwargs["max_batch_size"]) == (300, 5000)
    weight = kwargs["element_size_fn"]
    short, long = "a short text", "word " * 400
    assert weight(short) < weight(long) <= 300  # capped: BatchElements would emit an empty batch
    assert weight({"text": short, "labels": ["x"]}) < weight({"text": short})  # 1 label < 4 labels
    assert weight(("key", long)) == weight(long)  # KeyedModelHandler passes (key, example)
    assert weight(42) == 1
    asking = GLiClassModelHandler(tiny_checkpoint, LABELS, prompt_field="ask").token_weight()
    assert asking({"text": short, "ask": ASK * 4}) > asking({"text": short, "ask": None})
    assert asking(("key", {"text": short, "ask": 7})) == asking(short)


def test_batching_kwargs_default_is_a_fixed_token_budget(tiny_checkpoint):
    kwargs = GLiClassModelHandler(tiny_checkpoint, LABELS).batch_elements_kwargs()
    assert kwargs["min_batch_size"] == kwargs["max_batch_size"] == gbeam.DEFAULT_BATCH_TOKENS
    kwargs = GLiClassModelHandler(tiny_checkpoint, LABELS, max_batch_tokens=999).batch_elements_kwargs()
    assert kwargs["min_batch_size"] == kwargs["max_batch_size"] == 999


def test_batching_kwargs_counts_and_length_buckets(tiny_checkpoint):
    weight = GLiClassModelHandler(tiny_checkpoint, LABELS).token_weight()
    assert batching_kwargs(weight, max_batch_size=8) == {"min_batch_size": None, "max_batch_size": 8}
    stateful = batching_kwargs(weight, max_batch_duration_secs=1, max_batch_size=8)
    assert stateful["max_batch_duration_secs"] == 1
    assert "element_size_fn" not in stateful  # Beam's stateful batching counts elements
    if gbeam._SUPPORTS_LENGTH_BUCKETS:
        assert stateful["batch_length_fn"] is weight
    with pytest.raises(ConfigError):
        batching_kwargs(weight, max_batch_duration_secs=1, max_batch_tokens=4096)


# ------------------------------------------------------------------------------------------------------
# run_inference, called directly


def test_run_inference_empty_batch(tiny_checkpoint, clf):
    assert GLiClassModelHandler(tiny_checkpoint, LABELS).run_inference([], clf) == []


def test_run_inference_element_kinds_in_order(tiny_checkpoint, clf, texts):
    handler = GLiClassModelHandler(tiny_checkpoint, LABELS)
    own = ["games", "science"]
    batch = [
        texts[0],
        {"text": texts[1], "id": 1},
        beam.Row(text=texts[2], labels=own),
        None,
        {"text": None},
        {"text": texts[3], "labels": own},
        beam.Row(text=texts[4]),
    ]
    results = handler.run_inference(batch, clf)
    assert [r.example for r in results] == batch
    assert all(isinstance(r, PredictionResult) and r.model_id == str(tiny_checkpoint) for r in results)
    shared = clf.classify([texts[0], texts[1], texts[4]], LABELS)
    mine = clf.classify([texts[2], texts[3]], own)
    want = [shared[0], shared[1], mine[0], None, None, mine[1], shared[2]]
    for got, expected in zip(results, want):
        assert_same(got.inference, expected)


def test_an_elements_mapping_is_its_own_hierarchy(tiny_checkpoint, clf, texts):
    """As gliclass reads a dict per text: an element's labels may be its hierarchy (or a list of them)."""
    handler = GLiClassModelHandler(tiny_checkpoint, LABELS)
    tree = {"software": ["games", "libraries"], "topic": {"science": ["physics"]}}
    batch = [{"text": texts[0], "labels": tree}, beam.Row(text=texts[1], labels=[tree, {"os": ["linux"]}])]
    first, second = handler.run_inference(batch, clf)
    assert_same(first.inference, clf.classify([texts[0]], tree)[0])
    assert_same(second.inference, clf.classify([texts[1]], {**tree, "os": ["linux"]})[0])
    assert {x["label"] for x in clf.classify([texts[0]], tree, threshold=0.0)[0]} == {
        "software.games", "software.libraries", "topic.science.physics"
    }  # fmt: skip


def test_from_config_keeps_the_job_and_its_options(tiny_checkpoint, clf, texts):
    prompt = "Which kind of software is this?"
    config = ClassifyConfig(
        str(tiny_checkpoint), LABELS, threshold=0.3, output="scores", options={"prompt": prompt}
    )
    handler = GLiClassModelHandler.from_config(config, text_field="body")
    assert handler.config == config and handler.config.options == config.options
    got = handler.run_inference([{"body": texts[0]}], clf)[0].inference
    with_prompt = clf.run([texts[0]], LABELS, return_all=True, prompt=prompt).results[0]
    without = clf.run([texts[0]], LABELS, return_all=True).results[0]
    assert got == pytest.approx({x["label"]: x["score"] for x in with_prompt}, abs=1e-6)
    assert got != pytest.approx({x["label"]: x["score"] for x in without}, abs=1e-6)


def test_run_inference_fails_a_malformed_element_alone(tiny_checkpoint, clf, texts):
    handler = GLiClassModelHandler(tiny_checkpoint, LABELS)
    want = clf.classify([texts[1]], LABELS)[0]
    pairs = {"text": texts[0], "labels": [("software", ["games"])]}  # a Parquet map, as Beam reads it
    for bad in ({"txt": texts[0]}, {"text": texts[0], "labels": "games"}, {"text": 3}, 7, pairs):
        good, failed = handler.run_inference([texts[1], bad], clf)
        assert_same(good.inference, want)
        assert isinstance(failed.inference, gbeam.Failed) and failed.example == bad
        assert failed.inference.reason.startswith("ElementError")


def poison_the_engine(monkeypatch):
    """Make the engine raise for any call whose texts include "POISON", as a broken batch would; returns
    the real Classifier.run."""
    real_run = Classifier.run

    def run(self, batch_texts, *args, **kwargs):
        if "POISON" in batch_texts:
            raise RuntimeError("the engine choked")
        return real_run(self, batch_texts, *args, **kwargs)

    monkeypatch.setattr(Classifier, "run", run)
    return real_run


def test_isolating_handler_keeps_failures_per_element(tiny_checkpoint, clf, texts, monkeypatch):
    handler = GLiClassModelHandler(tiny_checkpoint, LABELS).isolating()
    real_run = poison_the_engine(monkeypatch)
    batch = [texts[0], "POISON", {"text": texts[1], "labels": 5}, texts[2]]
    results = handler.run_inference(batch, clf)
    assert [r.example for r in results] == batch
    assert results[1].inference == gbeam.Failed("RuntimeError: the engine choked")
    assert "ElementError" in results[2].inference.reason
    want = real_run(clf, [texts[0], texts[2]], LABELS).results
    assert_same(results[0].inference, want[0])
    assert_same(results[3].inference, want[1])


def test_elements_carry_their_own_prompt_and_threshold(tiny_checkpoint, clf, texts, tmp_path):
    """A prompt or threshold field gives each element its own (None, NaN or missing: the job's); a bad
    cell fails its element alone as invalid_option, and every element, in order and on FnApiRunner, is
    what ClassifyConfig.classify gives for the same cells."""
    fields = {"prompt_field": "ask", "threshold_field": "cut"}
    handler = GLiClassModelHandler(tiny_checkpoint, LABELS, threshold=0.0, prompt="Describe it:", **fields)
    batch = [
        {"text": texts[0], "ask": ASK, "cut": 0.0},
        beam.Row(text=texts[1], ask=None, cut=1.0),
        {"text": texts[2], "cut": 2.0},
        texts[0],
        beam.Row(text=texts[3], ask=7, cut=None),
        {"text": texts[4], "ask": ASK, "cut": float("nan")},
    ]
    plain = [texts[0], texts[1], texts[2], texts[0], texts[3], texts[4]]
    prompts, cuts = [ASK, None, None, None, 7, ASK], [0.0, 1.0, 2.0, None, None, float("nan")]
    want, out = handler.config.classify(plain, row_prompts=prompts, row_thresholds=cuts, classifier=clf)
    results = handler.run_inference(batch, clf)
    assert [r.example for r in results] == batch
    for i, (result, record) in enumerate(zip(results, want)):
        if i in (2, 4):
            assert isinstance(result.inference, gbeam.Failed) and record is None
            assert result.inference.reason.startswith("invalid row option")
        else:
            assert_same(result.inference, record)
    assert [o.code for o in out.outcomes if o.is_failed] == ["invalid_option"] * 2
    assert results[1].inference == [] and len(results[0].inference) == len(LABELS)
    assert [x["score"] for x in results[0].inference] != pytest.approx(
        [x["score"] for x in results[3].inference], abs=1e-4
    )  # the same text: its own prompt, not the job's

    elements = [
        {"id": i, "text": t, "ask": p, "cut": c} for i, (t, p, c) in enumerate(zip(plain, prompts, cuts))
    ]
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        classified = pipeline | beam.Create(elements) | ClassifyText.from_config(handler.config, **fields)
        sink(classified.results, tmp_path / "ok", "SinkOk")
        sink(classified.dead_letters, tmp_path / "dead", "SinkDead")
    got = {r.example["id"]: r.inference for r in collected(tmp_path / "ok")}
    assert sorted(got) == [0, 1, 3, 5]
    for i in got:
        assert_same(got[i], want[i])
    dead = sorted(collected(tmp_path / "dead"), key=lambda d: d["element"]["id"])
    assert [(d["element"]["id"], d["stage"]) for d in dead] == [(2, "inference"), (4, "inference")]
    stats = gbeam.run_stats(pipeline.result)
    assert (stats.rows, stats.failed, stats.reasons["invalid_option"]) == (6, 2, 2)


def test_isolation_keeps_each_elements_prompt_and_threshold(tiny_checkpoint, clf, texts, monkeypatch):
    """A batch retried in halves keeps each element's cells with its text."""
    handler = GLiClassModelHandler(tiny_checkpoint, LABELS, prompt_field="ask", threshold_field="cut")
    cuts = [0.0, 1.0, None, 0.0, 1.0, 0.0]
    prompts = [ASK, None, ASK, None, ASK, ASK]
    batch = [{"text": t, "ask": p, "cut": c} for t, p, c in zip(texts, prompts, cuts)]
    batch[2]["text"] = "POISON"
    poison_the_engine(monkeypatch)
    results = handler.isolating().run_inference(batch, clf)
    assert results[2].inference == gbeam.Failed("RuntimeError: the engine choked")
    keep = [0, 1, 3, 4, 5]
    want, _ = handler.config.classify(
        [texts[i] for i in keep],
        row_prompts=[prompts[i] for i in keep],
        row_thresholds=[cuts[i] for i in keep],
        classifier=clf,
    )
    assert [len(results[i].inference) for i in keep] == [len(LABELS), 0, len(LABELS), 0, len(LABELS)]
    for i, record in zip(keep, want):
        assert_same(results[i].inference, record)


# ------------------------------------------------------------------------------------------------------
# FnApiRunner


def test_handler_on_fnapirunner_equals_classifier(tiny_checkpoint, clf, texts, tmp_path):
    long_text = " ".join(texts[:12])
    elements = [*texts, None, long_text]
    handler = GLiClassModelHandler(tiny_checkpoint, LABELS, min_batch_tokens=2000)
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        sink(pipeline | beam.Create(elements) | RunInference(handler), tmp_path)
    results = collected(tmp_path)
    assert len(results) == len(elements)
    got = {r.example: r.inference for r in results}
    want = clf.run(elements, LABELS)
    for text, expected in zip(elements, want.results):
        assert_same(got[text], expected)
    metrics = gliclass_metrics(pipeline.result)
    assert metrics["rows"] == len(elements)
    assert metrics["null_inputs"] == want.stats["null_inputs"] == 1
    assert metrics["truncated"] == want.stats["truncated"] >= 1
    assert metrics["batch_size"][0] == len(elements)
    assert metrics["batch_size"][1] > 1  # token-weighted batches, not one big batch
    assert metrics["batch_tokens"][0] == want.stats["real_tokens"]
    beams_own = {
        (m.key.metric.namespace, m.key.metric.name): m.committed
        for m in pipeline.result.metrics().query()["counters"]
    }
    assert beams_own[("RunInference", "num_inferences")] == len(elements)  # where Beam's dashboards look
    assert not any(ns == "gliclass" and name == "num_inferences" for ns, name in beams_own)


def test_keyed_model_handler(tiny_checkpoint, clf, texts, tmp_path):
    handler = KeyedModelHandler(GLiClassModelHandler(tiny_checkpoint, LABELS))
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        sink(pipeline | beam.Create(list(enumerate(texts[:20]))) | RunInference(handler), tmp_path)
    results = dict(collected(tmp_path))
    assert sorted(results) == list(range(20))
    for key, expected in enumerate(clf.classify(texts[:20], LABELS)):
        assert results[key].example == texts[key]
        assert_same(results[key].inference, expected)


def test_with_exception_handling_gets_only_what_failed(tiny_checkpoint, clf, texts, tmp_path):
    bad = [42, {"body": "no text field"}]
    elements = texts[:10] + bad + texts[10:20]  # 22 elements, 2 bad, in one batch
    handler = GLiClassModelHandler(tiny_checkpoint, LABELS)
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        results, failed = pipeline | beam.Create(elements) | RunInference(handler).with_exception_handling()
        sink(results, tmp_path / "results", "SinkResults")
        sink(failed.failed_inferences, tmp_path / "failed", "SinkFailed")
    assert collected(tmp_path / "failed") == []  # Beam's failed output: no good element sent there
    results = collected(tmp_path / "results")
    assert len(results) == 22
    failures = [r for r in results if isinstance(r.inference, gbeam.Failed)]
    assert sorted(map(str, (r.example for r in failures))) == sorted(map(str, bad))
    got = {r.example: r.inference for r in results if isinstance(r.example, str)}
    for text, expected in zip(texts[:20], clf.classify(texts[:20], LABELS)):
        assert_same(got[text], expected)
    stats = gbeam.run_stats(pipeline.result)
    assert (stats.rows, stats.ok, stats.failed) == (22, 20, 2)


def test_classify_text_counts_dead_letters(tiny_checkpoint, texts, tmp_path):
    elements = texts[:20] + [7, {"text": texts[0], "labels": ["games", "games"]}]  # 22 in, 2 dead
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        out = pipeline | beam.Create(elements) | ClassifyText(tiny_checkpoint, LABELS)
        sink(out.dead_letters, tmp_path / "dead", "SinkDead")
    assert len(collected(tmp_path / "dead")) == 2
    assert gbeam.dead_letter_count(pipeline.result) == 2
    assert gbeam.run_stats(pipeline.result).failed == 2


def test_model_update_through_a_side_input(tiny_checkpoint, checkpoint_factory, texts, tmp_path):
    from apache_beam.ml.inference.base import ModelMetadata

    second = str(checkpoint_factory(seed=13))
    handler = GLiClassModelHandler(tiny_checkpoint, LABELS, output="scores")
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        update = pipeline | "Update" >> beam.Create([ModelMetadata(model_id=second, model_name="second")])
        elements = pipeline | "Texts" >> beam.Create(texts[:12])
        sink(elements | RunInference(handler, model_metadata_pcoll=update), tmp_path)
    results = collected(tmp_path)
    assert len(results) == 12 and {r.model_id for r in results} == {second}
    new = Classifier.load(second).run(texts[:12], LABELS, return_all=True).results
    old = Classifier.load(str(tiny_checkpoint)).run(texts[:12], LABELS, return_all=True).results
    got = {r.example: r.inference for r in results}
    for text, want, before in zip(texts, new, old):
        assert got[text] == pytest.approx({x["label"]: x["score"] for x in want}, abs=1e-5)
        assert got[text] != pytest.approx({x["label"]: x["score"] for x in before}, abs=1e-5)


def test_update_model_path_swaps_the_model_a_worker_loads(tiny_checkpoint, checkpoint_factory, texts):
    second = str(checkpoint_factory(seed=13))
    handler = GLiClassModelHandler(tiny_checkpoint, LABELS)
    handler.update_model_path(second)
    model = handler.load_model()
    assert model is Classifier.load(second)
    assert handler.run_inference(texts[:1], model)[0].model_id == second
    handler.update_model_path(None)  # Beam's "no update": keep the model
    assert handler.config.model == second
    with pytest.raises(ConfigError):
        handler.update_model_path("not a model id!")


def test_glicass_dofn_shares_one_model(checkpoint_factory, texts, tmp_path):
    path = checkpoint_factory(seed=12)
    before = load_count()
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        elements = pipeline | beam.Create(texts[:20])
        single = elements | "One" >> beam.ParDo(GLiClassDoFn(path, LABELS))
        batched = (
            elements
            | beam.BatchElements(min_batch_size=4, max_batch_size=8)
            | "Batches" >> beam.ParDo(GLiClassDoFn(path, LABELS))
        )
        sink(single, tmp_path / "single", "SinkOne")
        sink(batched, tmp_path / "batched", "SinkBatches")
    assert load_count() == before + 1
    want = Classifier.load(str(path)).classify(texts[:20], LABELS)
    for name in ("single", "batched"):
        got = {r.example: r.inference for r in collected(tmp_path / name)}
        assert len(got) == 20
        for text, expected in zip(texts, want):
            assert_same(got[text], expected)


def test_classify_text_dead_letters(tiny_checkpoint, clf, texts, tmp_path, monkeypatch):
    real_run = Classifier.run

    def run(self, batch_texts, *args, **kwargs):
        if any(t is not None and "POISON" in t for t in batch_texts):
            raise RuntimeError("the engine choked")
        return real_run(self, batch_texts, *args, **kwargs)

    monkeypatch.setattr(Classifier, "run", run)  # FnApiRunner runs in this process, so the patch applies
    good = texts[:12]
    poisoned = [
        {"txt": "no text field"},
        {"text": texts[20], "labels": "games"},
        42,
        {"text": texts[21], "labels": ["games", ""]},
        "POISON " + texts[22],
    ]
    elements = good[:6] + poisoned + good[6:]
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        out = pipeline | beam.Create(elements) | ClassifyText(tiny_checkpoint, LABELS, min_batch_tokens=50000)
        sink(out.results, tmp_path / "results", "SinkResults")
        sink(out.dead_letters, tmp_path / "dead", "SinkDead")
    results = collected(tmp_path / "results")
    dead = collected(tmp_path / "dead")
    assert sorted(map(str, (d["element"] for d in dead))) == sorted(map(str, poisoned))
    reasons = {str(d["element"]): (d["stage"], d["reason"]) for d in dead}
    assert reasons[str(poisoned[0])][0] == "validate" and "'text'" in reasons[str(poisoned[0])][1]
    assert reasons[str(poisoned[1])][0] == "validate" and "list of label" in reasons[str(poisoned[1])][1]
    assert reasons[str(poisoned[2])][0] == "validate"
    assert reasons[str(poisoned[3])][0] == "inference" and "empty label" in reasons[str(poisoned[3])][1]
    assert reasons[str(poisoned[4])] == ("inference", "RuntimeError: the engine choked")
    # the two inference failures shared one batch with every good element, which still succeeded
    stats = gbeam.run_stats(pipeline.result)
    assert (stats.rows, stats.ok, stats.failed) == (len(elements), len(good), len(poisoned))
    assert stats.reasons == {"malformed_element": 3, "invalid_labels": 1, "inference_error": 1}
    assert gbeam.dead_letter_count(pipeline.result) == len(poisoned)
    got = {r.example: r.inference for r in results}
    assert sorted(got) == sorted(good)
    for text, expected in zip(good, real_run(clf, good, LABELS).results):
        assert_same(got[text], expected)


# ------------------------------------------------------------------------------------------------------
# streaming


class WindowOf(beam.DoFn):
    def process(self, result, w=beam.DoFn.WindowParam):
        yield result.example, (w.start.micros, w.end.micros), result.inference


@pytest.mark.parametrize("stateful", [False, True], ids=["bundle-batches", "stateful-batches"])
def test_streaming_fixed_windows(tiny_checkpoint, clf, texts, tmp_path, stateful):
    size, step = 20, 3
    batching = {"max_batch_duration_secs": 1, "max_batch_size": 4} if stateful else {}
    handler = GLiClassModelHandler(tiny_checkpoint, LABELS, **batching)
    stream = Stream()
    for i, text in enumerate(texts[:16]):
        stream = stream.add_elements([window.TimestampedValue(text, i * step)])
        if i % 5 == 4:
            stream = stream.advance_watermark_to(i * step + 1)
    stream = stream.advance_watermark_to_infinity()
    options = PipelineOptions(streaming=True)
    with beam.Pipeline(runner=BundleBasedDirectRunner(), options=options) as pipeline:
        windowed = pipeline | stream | beam.WindowInto(window.FixedWindows(size))
        sink(windowed | RunInference(handler) | beam.ParDo(WindowOf()), tmp_path)
    got = {text: (span, inference) for text, span, inference in collected(tmp_path)}
    assert len(got) == 16
    want = clf.classify(texts[:16], LABELS)
    for i, text in enumerate(texts[:16]):
        start = (i * step) // size * size
        assert got[text][0] == (start * 1_000_000, (start + size) * 1_000_000)
        assert_same(got[text][1], want[i])


# ------------------------------------------------------------------------------------------------------
# multi-process DirectRunner


def make_probe():
    # nested, so that cloudpickle ships it by value to worker processes, which cannot import this module
    def probe(result):
        """Runs in the process that ran the inference: which process, and how many models it loaded."""
        import os

        from gliclass_pipelines.model.sources import load_count

        return os.getpid(), load_count(), result.example, result.inference

    return probe


def load_logging_handler(log: Path, *args, **kwargs):
    """A handler whose load_model appends "<pid> <models loaded>" to ``log``; the class is nested so that
    cloudpickle ships it by value to worker processes, which cannot import this module."""

    class LoadLogging(GLiClassModelHandler):
        def load_model(self):
            import os

            from gliclass_pipelines.model.sources import load_count

            before = load_count()
            model = super().load_model()
            with open(log, "a") as handle:
                handle.write(f"{os.getpid()} {load_count() - before}\n")
            return model

    return LoadLogging(*args, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("large_model", [False, True], ids=["per-process", "large_model"])
def test_multi_process_loads(tiny_checkpoint, clf, debian_texts, tmp_path, large_model):
    """Measures two things per worker process: how often load_model really loaded a model (a log line per
    load_model call, written by a test subclass of the handler), and the registry's load_count() in every
    process that ran inference (read by a DoFn fused after RunInference)."""
    log = tmp_path / "loads.log"
    texts = debian_texts[100:160]
    handler = load_logging_handler(log, tiny_checkpoint, LABELS, num_threads=1, large_model=large_model)
    options = PipelineOptions(direct_running_mode="multi_processing", direct_num_workers=2)
    with beam.Pipeline(runner="DirectRunner", options=options) as pipeline:
        results = pipeline | beam.Create(texts) | beam.Reshuffle() | RunInference(handler)
        sink(results | beam.Map(make_probe()), tmp_path / "out")
    rows = collected(tmp_path / "out")
    loads = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
    inference_pids = {pid: count for pid, count, _, _ in rows}
    assert len(inference_pids) == 2, "both worker processes must run inference for this test to mean much"
    assert os.getpid() not in inference_pids
    if large_model:
        assert [n for _, n in loads] == [1]  # one load_model call on the whole machine, which loaded
        assert sorted(inference_pids.values()) == [0, 1]  # the other process used the shared model
    else:
        assert Counter(pid for pid, _ in loads) == Counter(dict.fromkeys(inference_pids, 1))
        assert all(n == 1 for _, n in loads)
        assert set(inference_pids.values()) == {1}
    want = dict(zip(texts, clf.classify(texts, LABELS)))
    assert len(rows) == len(texts)
    for _, _, text, inference in rows:
        assert_same(inference, want[text])


# ------------------------------------------------------------------------------------------------------
# beam/classify_pipeline.py


def test_classify_pipeline_end_to_end(tiny_checkpoint, clf, debian_rows, tmp_path):
    rows = debian_rows[:25]
    lines = [json.dumps(r) for r in rows] + ["not json", json.dumps({"id": "no-text"}), "[1, 2]"]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    command = [
        sys.executable,
        str(ROOT / "beam" / "classify_pipeline.py"),
        f"--input={source}",
        f"--output={tmp_path / 'out' / 'results'}",
        f"--labels={','.join(LABELS)}",
        f"--model={tiny_checkpoint}",
        f"--dead_letter_output={tmp_path / 'dead' / 'dead'}",
        "--runner=FnApiRunner",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = [json.loads(x) for p in (tmp_path / "out").glob("*.jsonl") for x in p.read_text().splitlines()]
    dead = [json.loads(x) for p in (tmp_path / "dead").glob("*.jsonl") for x in p.read_text().splitlines()]
    assert sorted(r["id"] for r in out) == sorted(r["id"] for r in rows)
    want = dict(zip((r["id"] for r in rows), clf.classify([r["text"] for r in rows], LABELS)))
    for record in out:
        assert_same(record["predictions"], want[record["id"]])
    assert sorted((d["stage"], str(d["element"])) for d in dead) == [
        ("parse", "[1, 2]"),
        ("parse", "not json"),
        ("validate", "{'id': 'no-text'}"),
    ]
    assert all(d["reason"] for d in dead)
