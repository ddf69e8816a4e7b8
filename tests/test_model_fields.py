"""Every GLiClassModelConfig field is honoured (parity with the reference), refused at load, or shown not to
change inference: the table in gliclass_pipelines.model.fields, checked against the reference's source."""

from __future__ import annotations

import inspect
import json
import re
import shutil
from pathlib import Path

import pytest

from gliclass_pipelines import Classifier
from gliclass_pipelines.errors import UnsupportedModelError
from gliclass_pipelines.model.fields import (
    CONFIG_FIELDS,
    HONOURED,
    OTHER_ARCHITECTURES,
    REFUSED,
    STATUSES,
    TRAINING,
)

TOL = 1e-5
LABELS = ["libraries", "games", "science", "networking", "python modules"]
ROW_LABELS = [["games", "sound"], ["libs", "devel", "x11", "web", "perl", "ruby"], ["science"]]
REFERENCE_FILES = ("model.py", "pipeline.py", "scorers.py", "calibration.py", "layers.py")
UNI = {"backbone": "deberta-v2", "prompt_first": False, "pooling": "avg", "scorer": "hopfield"}
BI = {"backbone": "modernbert", "architecture": "bi-encoder", "pooling": "avg", "scorer": "hopfield"}

# Config overrides that exercise each honoured field the covering VARIANTS of the parity suite leave at
# their defaults; hopfield checkpoints, where label slots matter.
HONOURED_PROBES = {
    "max_labels_alloc=fixed": {"max_labels_alloc": "fixed", "max_num_classes": 8},
    "max_labels_alloc=7": {"max_labels_alloc": 7},
    "layer_wise": {"layer_wise": True},
    # the reference reads hidden_states[encoder_layer_id] only with output_hidden_states, which layer_wise
    # (inert at inference) turns on; without it, it raises TypeError (test_encoder_layer_id_...)
    "encoder_layer_id": {"encoder_layer_id": 1, "layer_wise": True},
    "embed_class_token": {"embed_class_token": False},
    "class_token_pooling": {"class_token_pooling": "average"},
    "normalize_features": {"normalize_features": True},
    "use_segment_embeddings": {"use_segment_embeddings": True},
    "projector_hidden_act": {"projector_hidden_act": "relu"},
    "use_calibrator": {
        "use_calibrator": True,
        "calibrator_use_bias": True,
        "calibrator_beta_max": 2.0,
        "calibrator_hidden_size": 16,
    },
}
# the fields the reference's bi-encoder reads (it ignores the uni-encoder's feature-extraction fields)
BI_PROBES = ("max_labels_alloc=fixed", "max_labels_alloc=7", "normalize_features", "use_calibrator")
# Honoured fields every tiny checkpoint sets (tests/test_parity.py runs them against the reference)
BUILT_BY_EVERY_CHECKPOINT = {
    "encoder_config", "encoder_model", "encoder_model_name", "label_model_config", "label_model_name",
    "class_token_index", "text_token_index", "example_token_index", "hidden_size", "vocab_size",
    "scorer_type", "scorer_num_heads", "scorer_mlp_hidden_size", "pooling_strategy", "architecture_type",
    "prompt_first", "pad_token_id",
}  # fmt: skip
# A value other than the default for every field that must not change inference
INERT_PROBES = {
    "ignore_index": -1, "problem_type": "single_label_classification", "initializer_range": 0.5,
    "scorer_attn_dropout": 0.5, "focal_loss_alpha": 0.9, "focal_loss_gamma": 5,
    "focal_loss_reduction": "sum", "logit_scale_init_value": 1.0, "contrastive_loss_coef": 1.0,
    "dropout": 0.5, "calibrator_dropout": 0.5, "freeze_media_encoders": False,
    "scorer_encoder_num_layers": 4, "scorer_full_sequence": True, "recurrent_steps": 3,
    "recurrent_min_steps": 2, "recurrent_inference": False, "recurrent_inference_max_steps": 5,
    "recurrent_halt_threshold": 0.5, "recurrent_improvement_coef": 0.5,
    "recurrent_improvement_margin": 0.5, "recurrent_bptt_steps": 2, "recurrent_read_text": True,
    "recurrent_confidence_coef": 0.5, "recurrent_confidence_mode": "absolute",
    "recurrent_confidence_margin": 0.5, "use_embedding_projection": True, "sep_token_index": 5,
}  # fmt: skip


def signature_fields() -> dict:
    from gliclass import GLiClassModelConfig

    parameters = inspect.signature(GLiClassModelConfig.__init__).parameters
    return {name: p.default for name, p in parameters.items() if name not in ("self", "kwargs")}


def source_reads() -> set[str]:
    """Config attributes the reference's model, scorer, calibrator and pipeline source reads."""
    import gliclass
    from transformers import PretrainedConfig

    names: set[str] = set()
    for file in REFERENCE_FILES:
        text = (Path(gliclass.__file__).parent / file).read_text(encoding="utf-8")
        names |= set(re.findall(r"\bconfig\.([A-Za-z_]\w*)", text))
        names |= set(re.findall(r"getattr\(\s*(?:[\w.]*\.)?config,\s*[\"'](\w+)[\"']", text))
    base = PretrainedConfig()
    return names - set(dir(base)) - set(vars(base))


def reference(path: Path, max_length: int, model=None):
    """The reference pipeline for a checkpoint (or for `model`, loaded from it)."""
    from gliclass import GLiClassModel, ZeroShotClassificationPipeline
    from transformers import AutoTokenizer

    model = model if model is not None else GLiClassModel.from_pretrained(str(path))
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    return ZeroShotClassificationPipeline(
        model, tokenizer, max_length=max_length, device="cpu", progress_bar=False
    )


def scores_of(results: list) -> list[dict[str, float]]:
    return [{x["label"]: x["score"] for x in r} for r in results]


def max_difference(ours: list, theirs: list) -> float:
    mine, ref = scores_of(ours), scores_of(theirs)
    assert [m.keys() for m in mine] == [r.keys() for r in ref]
    return max(abs(m[k] - r[k]) for m, r in zip(mine, ref) for k in r)


def with_config(path: Path, tmp_path: Path, name: str, **changes) -> Path:
    """A copy of the checkpoint whose config.json has `changes`."""
    copy = Path(shutil.copytree(path, tmp_path / name))
    config = json.loads((copy / "config.json").read_text())
    config.update(changes)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


def trace(config, read: set[str]) -> None:
    """Record in `read` the name of every attribute read on `config` from now on."""
    original = type(config)

    class Traced(original):
        def __getattribute__(self, name):
            read.add(name)
            return original.__getattribute__(self, name)

    config.__class__ = Traced


@pytest.fixture(scope="module")
def texts(debian_texts):
    return [t for t in debian_texts if 20 < len(t.split()) < 90][:4]


# ---- the table covers the reference ----------------------------------------------------------------


def test_every_reference_config_field_has_a_row_with_its_default():
    fields = signature_fields()
    assert set(fields) - set(CONFIG_FIELDS) == set(), "classify the reference's new config fields"
    assert set(CONFIG_FIELDS) - set(fields) <= source_reads(), "a row for a field the reference never reads"
    assert {name: use.default for name, use in CONFIG_FIELDS.items() if name in fields} == fields
    assert {use.status for use in CONFIG_FIELDS.values()} <= set(STATUSES)


def test_every_field_the_reference_source_reads_has_a_row():
    assert source_reads() - set(CONFIG_FIELDS) == set()


def test_inference_reads_only_honoured_or_refused_fields(checkpoint_factory, texts):
    """Trace the fields the reference's pipeline and forward read while classifying, on both architectures
    (the uni-encoder with a fixed allocation, which also reads max_num_classes)."""
    from gliclass import GLiClassModel

    read: set[str] = set()
    for variant in ({**UNI, "config": {"max_labels_alloc": "fixed"}}, BI):
        path = checkpoint_factory(**variant)
        model = GLiClassModel.from_pretrained(str(path))
        trace(model.config, read)
        pipeline = reference(path, 512, model)
        pipeline(texts[:2], LABELS, threshold=0.0, batch_size=1)
        pipeline(texts[:3], ROW_LABELS, threshold=0.0, batch_size=1)
    fields = read & set(CONFIG_FIELDS)
    assert {"max_labels_alloc", "max_num_classes", "layer_wise", "normalize_features"} <= fields
    wrong = {name: CONFIG_FIELDS[name].status for name in fields}
    assert {n: s for n, s in wrong.items() if s not in (HONOURED, REFUSED)} == {}


# ---- each status holds ------------------------------------------------------------------------------


def test_every_honoured_field_is_exercised_against_the_reference():
    probed = {field for overrides in HONOURED_PROBES.values() for field in overrides}
    honoured = {name for name, use in CONFIG_FIELDS.items() if use.status == HONOURED}
    assert honoured - probed - BUILT_BY_EVERY_CHECKPOINT == set()


@pytest.mark.parametrize(
    ("base", "probe"), [("uni", p) for p in HONOURED_PROBES] + [("bi", p) for p in BI_PROBES]
)
def test_honoured_fields_give_the_reference_scores(checkpoint_factory, texts, base, probe):
    variant = {**(UNI if base == "uni" else BI), "config": HONOURED_PROBES[probe]}
    clf = Classifier.load(str(checkpoint_factory(**variant)), device="cpu")
    ref = reference(checkpoint_factory(**variant), clf.max_length)
    theirs = ref(texts, LABELS, threshold=0.0, batch_size=1)
    mine = clf.classify(texts, LABELS, threshold=0.0)
    assert max_difference(mine, theirs) <= TOL
    assert max(max(s.values()) - min(s.values()) for s in scores_of(mine)) > 0.01
    # one batch mixing rows with different label counts gives each row its scores alone
    rows = [texts[0]] * len(ROW_LABELS) if base == "bi" else texts[: len(ROW_LABELS)]
    out = clf.run(rows, ROW_LABELS, threshold=0.0, batch_tokens=100_000)
    alone = [ref([t], labels, threshold=0.0, batch_size=1)[0] for t, labels in zip(rows, ROW_LABELS)]
    assert max_difference(out.results, alone) <= TOL


def test_refused_fields_are_refused_at_load_naming_the_field(checkpoint_factory, tmp_path):
    refused = [name for name, use in CONFIG_FIELDS.items() if use.status == REFUSED]
    assert {"use_lstm", "squeeze_layers", "extract_text_features", "multimodal"} == set(refused)
    for name in refused:
        path = with_config(checkpoint_factory(), tmp_path, name, **{name: True})
        with pytest.raises(UnsupportedModelError, match=f"{name}=True") as error:
            Classifier.load(str(path), device="cpu")
        assert CONFIG_FIELDS[name].why in str(error.value)


def test_fields_that_do_not_change_inference(checkpoint_factory, texts, tmp_path):
    """Non-default values of every training-only and other-architecture field (all at once: one load per
    architecture) leave the reference's scores as they were, and ours with them."""
    inert = {n for n, use in CONFIG_FIELDS.items() if use.status in (TRAINING, OTHER_ARCHITECTURES)}
    assert set(INERT_PROBES) == inert
    for variant in (UNI, BI):
        path = checkpoint_factory(**variant)
        ours = Classifier.load(str(path), device="cpu").classify(texts[:2], LABELS, threshold=0.0)
        changed = with_config(path, tmp_path, variant["backbone"], **INERT_PROBES)
        assert json.loads((changed / "config.json").read_text())["recurrent_steps"] == 3
        theirs = reference(changed, 512)(texts[:2], LABELS, threshold=0.0, batch_size=1)
        assert max_difference(ours, theirs) <= TOL
        again = Classifier.load(str(changed), device="cpu").classify(texts[:2], LABELS, threshold=0.0)
        assert max_difference(again, ours) == 0.0


# ---- max_labels_alloc, squeeze_layers, layer_wise, encoder_layer_id ---------------------------------


def test_a_label_set_larger_than_the_allocation_is_scored_in_groups(checkpoint_factory, texts):
    """The reference drops the labels past a fixed allocation and then fails; here they are scored in
    groups of at most the allocation, each exactly as the reference scores that group alone."""
    path = checkpoint_factory(**UNI, config={"max_labels_alloc": 3})
    clf = Classifier.load(str(path), device="cpu")
    ref = reference(path, clf.max_length)
    with pytest.raises(ValueError, match="shorter"):
        ref(texts, LABELS, threshold=0.0, batch_size=1)
    assert [len(g.labels) for g in clf.prepare(LABELS).groups] == [3, 2]
    parts = [
        ref(texts, LABELS[:3], threshold=0.0, batch_size=1),
        ref(texts, LABELS[3:], threshold=0.0, batch_size=1),
    ]
    theirs = [sorted(a + b, key=lambda x: -x["score"]) for a, b in zip(*parts)]
    assert max_difference(clf.classify(texts, LABELS, threshold=0.0), theirs) <= TOL


def test_a_fixed_allocation_longer_than_the_sequence(checkpoint_factory):
    """25 slots ('fixed', the default max_num_classes) for one label and a short text: fewer tokens than
    slots, scored as the reference scores them (the slot mask was once cut to the sequence's length)."""
    path = checkpoint_factory(**UNI, config={"max_labels_alloc": "fixed"})
    clf = Classifier.load(str(path), device="cpu")
    texts, labels = ["b", "a short text"], ["games"]
    assert max(map(len, clf.encoder.tokens_many(texts))) <= 5  # with the label and markers, under 25
    theirs = reference(path, clf.max_length)(texts, labels, threshold=0.0, batch_size=1)
    assert max_difference(clf.classify(texts, labels, threshold=0.0), theirs) <= TOL


@pytest.mark.parametrize(
    "changes",
    [
        {"max_labels_alloc": "auto"},
        {"max_labels_alloc": "8"},
        {"max_labels_alloc": True},
        {"max_labels_alloc": 0},
        {"max_labels_alloc": 2.5},
        {"max_labels_alloc": "fixed", "max_num_classes": 0},
    ],
    ids=repr,
)
def test_allocations_the_reference_does_not_define_are_refused(checkpoint_factory, tmp_path, changes):
    path = with_config(checkpoint_factory(), tmp_path, "alloc", **changes)
    with pytest.raises(UnsupportedModelError, match="max_labels_alloc") as error:
        Classifier.load(str(path), device="cpu")
    assert "'dynamic', 'fixed' and a positive integer" in str(error.value) or "max_num_classes=0" in str(
        error.value
    )


def test_squeeze_layers_is_refused_because_the_reference_cannot_run_it(checkpoint_factory, texts, tmp_path):
    path = with_config(checkpoint_factory(), tmp_path, "squeeze", squeeze_layers=True)
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        reference(path, 512)(texts[:1], LABELS, threshold=0.0, batch_size=1)
    with pytest.raises(UnsupportedModelError, match="squeeze_layers=True") as error:
        Classifier.load(str(path), device="cpu")
    assert "the reference gliclass 0.1.21 cannot run it either" in str(error.value)


@pytest.mark.parametrize("base", ["uni", "bi"])
def test_layer_wise_on_or_off_gives_the_same_scores(checkpoint_factory, texts, tmp_path, base):
    path = checkpoint_factory(**(UNI if base == "uni" else BI))
    layer_wise = with_config(path, tmp_path, "layer-wise", layer_wise=True)
    off = reference(path, 512)(texts, LABELS, threshold=0.0, batch_size=1)
    on = reference(layer_wise, 512)(texts, LABELS, threshold=0.0, batch_size=1)
    assert max_difference(on, off) == 0.0
    assert (
        max_difference(
            Classifier.load(str(layer_wise), device="cpu").classify(texts, LABELS, threshold=0.0), on
        )
        <= TOL
    )


def test_encoder_layer_id_scores_the_layer_the_reference_scores(checkpoint_factory, texts, tmp_path):
    """Without layer_wise the reference asks for no hidden states and fails; with it (inert otherwise) it
    scores hidden_states[encoder_layer_id], as this library does either way."""
    path = checkpoint_factory(**UNI, config={"encoder_layer_id": 1, "layer_wise": True})
    plain = with_config(path, tmp_path, "layer-id", layer_wise=False)
    with pytest.raises(TypeError, match="not subscriptable"):
        reference(plain, 512)(texts[:1], LABELS, threshold=0.0, batch_size=1)
    theirs = reference(path, 512)(texts, LABELS, threshold=0.0, batch_size=1)
    last_layer = with_config(path, tmp_path, "last-layer", encoder_layer_id=-1)
    last = reference(last_layer, 512)(texts, LABELS, threshold=0.0, batch_size=1)
    assert max_difference(theirs, last) > 0.01  # the layer matters
    mine = Classifier.load(str(plain), device="cpu").classify(texts, LABELS, threshold=0.0)
    assert max_difference(mine, theirs) <= TOL
