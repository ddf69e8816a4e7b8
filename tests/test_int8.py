"""precision="int8": the encoder quantized by ONNX Runtime, on tiny checkpoints through the real loader."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from gliclass_pipelines.errors import ConfigError, ModelLoadError  # noqa: E402
from gliclass_pipelines.model.int8 import check_precision, precision_device, quantize  # noqa: E402

TEXTS = [
    "A library for parsing XML files quickly.",
    "A puzzle game with many levels and a level editor for children and adults alike.",
    "Tools for astronomy",
    None,
    "Plot charts from the command line; supports many output formats and colour schemes.",
    "ok",
]
LABELS = ["libs", "games", "science", "python", "graphics"]


def fresh_classifier(path, *, int8: bool):
    """A Classifier on its own float32 copy of the checkpoint, quantized when asked."""
    from gliclass_pipelines.core.classifier import Classifier
    from gliclass_pipelines.model.sources import load_checkpoint

    model, tokenizer, label_tokenizer = load_checkpoint(path, str(path))
    model.eval()
    if int8:
        quantize(model, threads=1)
    return Classifier(
        model, tokenizer, source=str(path), device="cpu", dtype="float32", label_tokenizer=label_tokenizer
    )


def score_table(clf, texts, labels=LABELS) -> np.ndarray:
    results = clf.run(texts, labels, return_all=True).results
    table = np.full((len(texts), len(labels)), np.nan)
    for i, row in enumerate(results):
        for item in row or []:
            table[i, labels.index(item["label"])] = item["score"]
    return table


@pytest.fixture(scope="module", params=["modernbert", "deberta-v2"])
def pair(request, checkpoint_factory):
    path = checkpoint_factory(backbone=request.param)
    return fresh_classifier(path, int8=False), fresh_classifier(path, int8=True)


def test_int8_classifies_close_to_float32(pair):
    float32, int8 = pair
    want, got = score_table(float32, TEXTS), score_table(int8, TEXTS)
    assert np.array_equal(np.isnan(want), np.isnan(got))  # the null text stays null, nothing else is lost
    assert np.isnan(got[3]).all() and not np.isnan(np.delete(got, 3, axis=0)).any()
    diff = np.abs(np.nan_to_num(want - got))
    assert 0 < diff.max() < 0.15  # really quantized, and close
    assert type(int8.forward_pass.inner.encoder_model).__name__ == "Int8Encoder"


def test_int8_is_deterministic_and_batch_independent(pair):
    _, int8 = pair
    first, second = score_table(int8, TEXTS), score_table(int8, TEXTS)
    assert np.array_equal(first, second, equal_nan=True)
    for i, text in enumerate(TEXTS):
        if text is not None:
            alone = score_table(int8, [text])[0]
            np.testing.assert_allclose(alone, first[i], atol=1e-5)


def test_int8_keeps_threshold_semantics(pair):
    _, int8 = pair
    results = int8.run(TEXTS, LABELS, threshold=0.0).results
    assert [r is None for r in results] == [t is None for t in TEXTS]
    assert all(len(r) == len(LABELS) for r in results if r is not None)


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_int8_on_a_gpu_device_names_the_alternatives(device):
    with pytest.raises(ConfigError) as info:
        check_precision("int8", device)
    message = str(info.value)
    assert device in message and "precision='float32'" in message and "device='cpu'" in message
    assert "bfloat16" in message


def test_precision_values_and_combinations():
    assert check_precision(None) == "float32"
    assert check_precision("float32", "cuda:0", "bfloat16") == "float32"
    assert check_precision("int8", "cpu", "float32") == "int8"
    assert check_precision("int8", "auto", "auto") == "int8"
    for bad in ("int4", "INT8", "fp16", ""):
        with pytest.raises(ConfigError, match="precision must be one of float32, int8"):
            check_precision(bad)
    with pytest.raises(ConfigError, match="dtype must be 'auto' or 'float32'"):
        check_precision("int8", "cpu", "bfloat16")
    assert precision_device("int8", "auto") == "cpu"
    assert precision_device("int8", None) == "cpu"
    assert precision_device("float32", "auto") == "auto"


def test_bi_encoder_is_refused_with_the_way_out(checkpoint_factory):
    from gliclass_pipelines.model.sources import load_checkpoint

    path = checkpoint_factory(architecture="bi-encoder")
    model, _, _ = load_checkpoint(path, str(path))
    with pytest.raises(ConfigError, match="bi-encoder.*precision='float32'"):
        quantize(model)


def test_only_a_float32_cpu_model_is_quantized(checkpoint_factory):
    import torch

    from gliclass_pipelines.model.sources import load_checkpoint

    path = checkpoint_factory()
    model, _, _ = load_checkpoint(path, str(path))
    model.to(torch.bfloat16)
    with pytest.raises(ConfigError, match="float32 model on the CPU"):
        quantize(model)
    model.to(torch.float32)
    quantize(model, threads=1)
    with pytest.raises(ConfigError, match="already int8"):
        quantize(model)


def test_an_export_that_does_not_match_torch_is_refused(checkpoint_factory, monkeypatch):
    from gliclass_pipelines.model import int8 as quantize_module
    from gliclass_pipelines.model.sources import load_checkpoint

    path = checkpoint_factory()
    model, _, _ = load_checkpoint(path, str(path))
    encoder = model.model.encoder_model
    monkeypatch.setattr(quantize_module, "EXPORT_TOLERANCE", -1.0)  # any difference is now too large
    with pytest.raises(ModelLoadError, match="differs from torch.*precision='float32'"):
        quantize(model)
    assert model.model.encoder_model is encoder  # the float32 model is left as it was


def test_the_onnx_path_without_int8_matches_float32(checkpoint_factory):
    """With every MatMul left float32 the exported graph, run one unpadded sequence at a time, gives
    float32's scores: what int8 changes is the quantization alone."""
    from gliclass_pipelines.core.classifier import Classifier
    from gliclass_pipelines.model.sources import load_checkpoint

    path = checkpoint_factory(backbone="modernbert")
    model, tokenizer, _ = load_checkpoint(path, str(path))
    quantize(model.eval(), threads=1, keep_float32="all")
    graph = Classifier(model, tokenizer, source=str(path), device="cpu", dtype="float32")
    float32 = fresh_classifier(path, int8=False)
    np.testing.assert_allclose(score_table(graph, TEXTS), score_table(float32, TEXTS), atol=1e-4)
    with pytest.raises(ConfigError, match="keep_float32 must be"):
        quantize(model, keep_float32="some")


# ----------------------------------------------------------------------------------------------------
# Through Classifier.load and the model registry


def test_registry_keeps_float32_and_int8_apart(checkpoint_factory):
    from gliclass_pipelines.core.classifier import Classifier
    from gliclass_pipelines.model.sources import REGISTRY

    path = checkpoint_factory(backbone="modernbert", seed=3)
    int8 = Classifier.load(path, device="cpu", precision="int8", num_threads=1)
    float32 = Classifier.load(path, device="cpu")
    assert int8 is not float32
    assert type(int8.forward_pass.inner.encoder_model).__name__ == "Int8Encoder"
    assert type(float32.forward_pass.inner.encoder_model).__name__ != "Int8Encoder"
    assert Classifier.load(path, precision="int8") is int8  # built once; 'auto' is the CPU for int8
    assert Classifier.load(path, device="cpu", precision="float32") is float32
    held = REGISTRY.keys()
    keys = [k for k in held if str(path) in str(k.source)]
    assert len(keys) == 2 and sum(k.precision == "int8" for k in keys) == 1
    diff = np.abs(np.nan_to_num(score_table(int8, TEXTS) - score_table(float32, TEXTS)))
    assert 0 < diff.max() < 0.15


def test_load_refuses_int8_on_a_gpu_before_loading(checkpoint_factory):
    from gliclass_pipelines.core.classifier import Classifier
    from gliclass_pipelines.model.sources import load_count

    path = checkpoint_factory()
    before = load_count()
    with pytest.raises(ConfigError, match="cannot run on device 'cuda:0'.*precision='float32'"):
        Classifier.load(path, device="cuda:0", precision="int8")
    with pytest.raises(ConfigError, match="precision must be one of"):
        Classifier.load(path, device="cpu", precision="int4")
    assert load_count() == before


# ----------------------------------------------------------------------------------------------------
# Through the settings carrier and the adapters

ADAPTER_LABELS = ["libraries", "games", "science", "networking"]


@pytest.fixture(scope="module")
def int8_expected(tiny_checkpoint, debian_texts):
    """In-process int8 results for 30 real texts and a null: what every adapter must give."""
    from gliclass_pipelines.core.classifier import Classifier

    texts = [*debian_texts[:30], None]
    clf = Classifier.load(tiny_checkpoint, device="cpu", precision="int8")
    return texts, clf.run(texts, ADAPTER_LABELS, return_all=True).results


def same_scores(got, want) -> None:
    if want is None:
        assert got is None
        return
    assert {x["label"]: x["score"] for x in got} == pytest.approx(
        {x["label"]: x["score"] for x in want}, abs=1e-4
    )


def _label(item: dict) -> str:
    return item["label"]


def assert_differs_from_float32(model: str, texts, int8_results) -> None:
    """int8's scores are not float32's: an adapter that dropped precision would fail the comparison."""
    from gliclass_pipelines.core.classifier import Classifier

    float32 = Classifier.load(model, device="cpu").run(texts, ADAPTER_LABELS, return_all=True).results
    diffs = [
        abs(a["score"] - b["score"])
        for x, y in zip(int8_results, float32)
        if x is not None
        for a, b in zip(sorted(x, key=_label), sorted(y, key=_label), strict=True)
    ]
    assert max(diffs) > 1e-3


def test_classify_config_carries_precision(tiny_checkpoint, int8_expected):
    from gliclass_pipelines.core.config import ClassifyConfig

    texts, want = int8_expected
    model = str(tiny_checkpoint)
    config = ClassifyConfig.from_settings(model, ADAPTER_LABELS, precision="int8", output="scores")
    assert config.precision == "int8" and config.with_(threshold=0.3).precision == "int8"
    assert type(config.classifier().forward_pass.inner.encoder_model).__name__ == "Int8Encoder"
    records, _ = config.classify(texts)
    for got, expected in zip(records, want):
        if expected is None:
            assert got is None
        else:
            assert got == pytest.approx({x["label"]: x["score"] for x in expected}, abs=1e-4)
    with pytest.raises(ConfigError, match="cannot run on device 'cuda'"):
        ClassifyConfig.from_settings(str(tiny_checkpoint), ADAPTER_LABELS, precision="int8", device="cuda")
    with pytest.raises(ConfigError, match="precision must be one of"):
        ClassifyConfig.from_settings(str(tiny_checkpoint), ADAPTER_LABELS, precision="half")


@pytest.mark.spark
def test_spark_udf_runs_int8(spark, tiny_checkpoint, int8_expected):
    from gliclass_pipelines.spark.udf import gliclass_udf

    texts, want = int8_expected
    df = spark.createDataFrame(list(enumerate(texts)), "id long, text string").repartition(2)
    column = gliclass_udf("text", model=str(tiny_checkpoint), labels=ADAPTER_LABELS, precision="int8")
    got = {row.id: row.r for row in df.select("id", column.alias("r")).collect()}
    assert sorted(got) == list(range(len(texts)))
    for i, expected in enumerate(want):
        kept = None if expected is None else [x for x in expected if x["score"] >= 0.5]
        if kept is None:
            assert got[i] is None
        else:
            assert [x["label"] for x in got[i]] == [x["label"] for x in kept]
            same_scores([x.asDict() for x in got[i]], kept)


@pytest.mark.beam
def test_beam_handler_runs_int8(tiny_checkpoint, int8_expected, tmp_path):
    beam = pytest.importorskip("apache_beam")
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from beam_support import collected, sink

    from gliclass_pipelines.beam.transforms import GLiClassModelHandler

    texts, want = int8_expected
    handler = GLiClassModelHandler(str(tiny_checkpoint), ADAPTER_LABELS, precision="int8", threshold=0.0)
    assert handler.config.precision == "int8"
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        sink(pipeline | beam.Create(texts) | RunInference(handler), tmp_path)
    got = {r.example: r.inference for r in collected(tmp_path)}
    assert len(got) == len(texts)
    for text, expected in zip(texts, want):
        same_scores(got[text], expected)


def test_cli_precision_flag(tiny_checkpoint, int8_expected, tmp_path):
    import json

    pq = pytest.importorskip("pyarrow.parquet")
    from gliclass_pipelines import cli

    texts, want = int8_expected
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    output = tmp_path / "out"
    args = ["classify", "--input", str(source), "--output", str(output), "--text-column", "text",
            "--id-column", "id", "--labels", ",".join(ADAPTER_LABELS), "--model", str(tiny_checkpoint),
            "--output-kind", "scores", "--precision", "int8"]  # fmt: skip
    assert cli.main(args) == 0
    rows = {r["id"]: r["gliclass"] for r in pq.read_table(output).to_pylist()}
    for i, expected in enumerate(want):
        if expected is None:
            assert rows[i] is None
        else:
            assert dict(rows[i]) == pytest.approx(  # a map column reads back as (label, score) pairs
                {x["label"]: x["score"] for x in expected}, abs=1e-4
            )
    assert cli.main([*args[:-1], "int4"]) == cli.EXIT_USAGE


@pytest.mark.spark
def test_spark_ml_transformer_runs_int8_and_keeps_it_on_disk(spark, tiny_checkpoint, int8_expected, tmp_path):
    from gliclass_pipelines.spark.ml import GLiClassTransformer
    from gliclass_pipelines.spark.udf import gliclass_udf

    texts, want = int8_expected
    model = str(tiny_checkpoint)
    assert_differs_from_float32(model, texts, want)
    assert GLiClassTransformer(model=model, labels=ADAPTER_LABELS).udf_settings()["precision"] == "float32"
    stage = GLiClassTransformer(model=model, labels=ADAPTER_LABELS, output="scores", precision="int8")
    stage.write().overwrite().save(str(tmp_path / "stage"))
    loaded = GLiClassTransformer.load(str(tmp_path / "stage"))
    assert loaded.getOrDefault("precision") == "int8"
    assert loaded.udf_settings()["precision"] == "int8"
    df = spark.createDataFrame(list(enumerate(texts)), "id long, text string").repartition(2)
    ours = gliclass_udf("text", model=model, labels=ADAPTER_LABELS, output="scores", precision="int8")
    rows = loaded.transform(df).select("id", "gliclass", ours.alias("udf")).orderBy("id").collect()
    assert [r.id for r in rows] == list(range(len(texts)))
    assert [r.gliclass for r in rows] == [r.udf for r in rows]
    for row, expected in zip(rows, want):
        got = None if row.gliclass is None else [{"label": k, "score": v} for k, v in row.gliclass.items()]
        same_scores(got, expected)
