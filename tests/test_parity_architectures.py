"""The architectures and scorers added for issue 19 section 3, each on a checkpoint the reference's own
classes built: every score equals the reference pipeline's at batch size 1, and a batch of 16 rows of mixed
lengths and label counts gives each row its scores alone. The figures go to build/coverage.json (the
README's coverage table)."""

from __future__ import annotations

import pytest
from coverage_support import combination_key, record
from test_parity import EXAMPLES, LABELS, PROMPT, ROW_LABELS, TOL, scores_of

from gliclass_pipelines import Classifier, Taxonomy
from gliclass_pipelines.core import classifier as engine
from gliclass_pipelines.model.checkpoint import tie_token_embeddings

# One checkpoint per design; module-scoped, tiny.
ARCHITECTURE_VARIANTS = {
    "uni-cross-attn-pass-tf": {
        "backbone": "deberta-v2",
        "architecture": "uni-encoder",
        "prompt_first": False,
        "pooling": "pass",
        "scorer": "cross-attn",
    },
    # knowledgator/gliclass-multilang-mini: a ModernBERT-family encoder, labels first, cross-attn over tokens
    "uni-cross-attn-pass-pf": {
        "backbone": "modernbert",
        "architecture": "uni-encoder",
        "prompt_first": True,
        "pooling": "pass",
        "scorer": "cross-attn",
    },
    "fused-pf-avg-simple": {
        "backbone": "bert",
        "architecture": "bi-encoder-fused",
        "prompt_first": True,
        "pooling": "avg",
        "scorer": "simple",
    },
    "fused-tf-first-hopfield": {
        "backbone": "deberta-v2",
        "architecture": "bi-encoder-fused",
        "prompt_first": False,
        "pooling": "first",
        "scorer": "hopfield",
    },
    "encdec-avg-simple": {"backbone": "t5", "architecture": "encoder-decoder", "pooling": "avg"},
    "encdec-pass-cross-attn": {
        "backbone": "t5",
        "architecture": "encoder-decoder",
        "pooling": "pass",
        "scorer": "cross-attn",
    },
    # with max pooling this random T5 amplified float32 noise to 1.1e-4 between batch 1 and 16 on one row
    # (0.0 in float64: the batching is exact; the tiny random weights are not well conditioned)
    "encdec-first-hopfield": {"backbone": "t5", "architecture": "encoder-decoder", "scorer": "hopfield"},
    "fused-tf-max-mlp": {
        "backbone": "modernbert",
        "architecture": "bi-encoder-fused",
        "prompt_first": False,
        "pooling": "max",
        "scorer": "mlp",
    },
    "fused-pf-last-wdot": {
        "backbone": "bert",
        "architecture": "bi-encoder-fused",
        "pooling": "last",
        "scorer": "weighted-dot",
    },
    "encdec-last-mlp": {
        "backbone": "t5",
        "architecture": "encoder-decoder",
        "pooling": "last",
        "scorer": "mlp",
    },
    "encdec-first-wdot": {"backbone": "t5", "architecture": "encoder-decoder", "scorer": "weighted-dot"},
    "encdec-cls-hopfield": {"backbone": "t5", "architecture": "encoder-decoder-cls", "scorer": "hopfield"},
    "encdec-cls-mlp": {"backbone": "t5", "architecture": "encoder-decoder-cls", "scorer": "mlp"},
    "encdec-cls-wdot": {"backbone": "t5", "architecture": "encoder-decoder-cls", "scorer": "weighted-dot"},
}
MIXED_LABELS = [*ROW_LABELS, LABELS, ["games"], ["devel", "libs"], ["a", "b", "c", "d", "e", "f", "g"]]


def largest_difference(ours: list, theirs: list) -> float:
    mine, ref = [scores_of(r) for r in ours], [scores_of(r) for r in theirs]
    assert [sorted(m) for m in mine] == [sorted(r) for r in ref]
    return max(abs(m[k] - r[k]) for m, r in zip(mine, ref) for k in r)


@pytest.fixture(scope="module", params=list(ARCHITECTURE_VARIANTS))
def case(request, checkpoint_factory):
    """(ours, the reference pipeline, the combination's key) for one checkpoint."""
    from gliclass import GLiClassModel, ZeroShotClassificationPipeline
    from transformers import AutoTokenizer

    variant = ARCHITECTURE_VARIANTS[request.param]
    path = checkpoint_factory(**variant)
    ours = Classifier.load(str(path), device="cpu")
    model = GLiClassModel.from_pretrained(str(path))
    if variant["architecture"].startswith("encoder-decoder"):
        backbone = model.model.encoder_decoder_model
        # the reference leaves the decoder's token embeddings random on load; tie them as saved
        assert backbone.decoder.embed_tokens.weight is not backbone.shared.weight
        tie_token_embeddings(model)
    reference = ZeroShotClassificationPipeline(
        model,
        AutoTokenizer.from_pretrained(str(path)),
        max_length=ours.max_length,
        device="cpu",
        progress_bar=False,
    )
    key = combination_key(
        variant["architecture"], variant.get("scorer", "simple"), variant.get("pooling", "first")
    )
    return ours, reference, key


@pytest.fixture
def record_figure(request):
    return lambda key, figure, value: record(key, figure, value, request.node.nodeid.split("[")[0])


@pytest.fixture(scope="module")
def texts(debian_texts):
    short = [t for t in debian_texts if 20 < len(t.split()) < 120][:5]
    return [*short, "A tiny arcade game.", "Tools for the Python language"]


def test_shared_labels_match_the_reference(case, texts, record_figure):
    ours, reference, key = case
    theirs = reference(texts, LABELS, threshold=0.0, batch_size=1)
    mine = ours.classify(texts, LABELS, threshold=0.0)
    difference = largest_difference(mine, theirs)
    record_figure(key, "parity", difference)
    assert difference <= TOL
    assert max(max(s.values()) - min(s.values()) for s in map(scores_of, mine)) > 0.01


def test_prompt_examples_and_single_label_match_the_reference(case, texts, record_figure):
    ours, reference, key = case
    theirs = reference(texts, LABELS, threshold=0.0, batch_size=1, prompt=PROMPT, examples=EXAMPLES)
    taxonomy = Taxonomy.from_labels(LABELS, prompt=PROMPT, examples=EXAMPLES)
    difference = largest_difference(ours.classify(texts, taxonomy, threshold=0.0), theirs)
    record_figure(key, "parity", difference)
    assert difference <= TOL
    best = [r[0]["label"] for r in ours.classify(texts, LABELS, multi_label=False)]
    theirs = reference(texts, LABELS, threshold=0.0, batch_size=1)
    assert best == [max(scores_of(r), key=scores_of(r).get) for r in theirs]


def test_a_mixed_batch_of_16_gives_each_row_its_scores_alone(case, debian_texts, record_figure, monkeypatch):
    """16 rows of different lengths and label counts in one forward pass (in input order, not sorted by
    length), against the reference for each row alone and against this library at batch size 1."""
    ours, reference, key = case
    rows = [t for t in debian_texts if 5 < len(t.split()) < 150][:16]
    labels = [MIXED_LABELS[i % len(MIXED_LABELS)] for i in range(len(rows))]
    with monkeypatch.context() as patch:
        patch.setattr(engine, "cut_batches", lambda lengths, budget, rows: [list(range(len(lengths)))])
        together = ours.run(rows, labels, threshold=0.0)
    assert together.stats.batches == 1 and len({len(r.split()) for r in rows}) > 8
    alone = ours.run(rows, labels, threshold=0.0, max_batch_rows=1)
    assert alone.stats.batches == 16
    batch_difference = largest_difference(together.results, alone.results)
    record_figure(key, "batch", batch_difference)
    assert batch_difference <= TOL
    theirs = [reference([t], row, threshold=0.0, batch_size=1)[0] for t, row in zip(rows, labels)]
    difference = largest_difference(together.results, theirs)
    record_figure(key, "parity", difference)
    assert difference <= TOL


# Combinations the reference builds but cannot run; each is refused at load, naming it and the reason.
UNI_PASS = ARCHITECTURE_VARIANTS["uni-cross-attn-pass-tf"]
BI = {"backbone": "modernbert", "architecture": "bi-encoder", "pooling": "avg", "scorer": "simple"}
REFUSED_COMBINATIONS = {
    "cross-attn without pass": (UNI_PASS, {"pooling_strategy": "first"}, "not enough values to unpack"),
    "pass without cross-attn": (UNI_PASS, {"scorer_type": "simple"}, "einsum"),
    "pass with the calibrator": (
        UNI_PASS,
        {"use_calibrator": True, "calibrator_hidden_size": 16},
        "the number of sizes provided",
    ),
    "bi-encoder with pass": (BI, {"scorer_type": "cross-attn", "pooling_strategy": "pass"}, "shape mismatch"),
    "bi-encoder-fused with pass": (
        ARCHITECTURE_VARIANTS["fused-pf-avg-simple"],
        {"scorer_type": "cross-attn", "pooling_strategy": "pass"},
        "shape mismatch",
    ),
    "encoder-decoder-cls with cross-attn": (
        ARCHITECTURE_VARIANTS["encdec-cls-mlp"],
        {"scorer_type": "cross-attn", "pooling_strategy": "pass"},
        "not enough values to unpack",
    ),
}


@pytest.mark.parametrize("name", list(REFUSED_COMBINATIONS))
def test_combinations_the_reference_cannot_run_are_refused(checkpoint_factory, tmp_path, name):
    from gliclass import GLiClassModel, ZeroShotClassificationPipeline
    from test_model_fields import with_config
    from transformers import AutoTokenizer

    from gliclass_pipelines.errors import UnsupportedModelError

    base, changes, failure = REFUSED_COMBINATIONS[name]
    path = with_config(checkpoint_factory(**base), tmp_path, "c", **changes)
    model = GLiClassModel.from_pretrained(str(path))
    tie_token_embeddings(model)
    reference = ZeroShotClassificationPipeline(
        model, AutoTokenizer.from_pretrained(str(path)), device="cpu", progress_bar=False
    )
    with pytest.raises((RuntimeError, ValueError), match=failure):
        reference(["A tiny arcade game."], LABELS, threshold=0.0, batch_size=1)
    with pytest.raises(UnsupportedModelError, match="pass|cross-attn") as error:
        Classifier.load(str(path), device="cpu")
    assert "the reference" in str(error.value)
