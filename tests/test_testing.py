"""Tests for gliclass_pipelines.testing: tiny random GLiClass checkpoints that load like Hub models."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gliclass_pipelines.taxonomy.labels import EXAMPLE_MARK, LABEL_MARK, SEP_MARK
from gliclass_pipelines.testing.checkpoints import (
    ARCHITECTURES,
    BACKBONES,
    POOLINGS,
    SCORERS,
    VARIANTS,
    make_tiny_checkpoint,
    variant_id,
)

TEXTS = [
    "The home team won the championship in overtime.",
    "Parliament passed the new budget after a long debate about taxes.",
    "I loved the movie, but the ending was far too long.",
]
LABELS = ["sports", "politics", "entertainment", "science"]


def _load(path: Path):
    import gliclass
    from transformers import AutoTokenizer

    return gliclass.GLiClassModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _scores(path: Path) -> list[list[float]]:
    """Scores of every label for every text, through the reference pipeline, labels in LABELS order."""
    import gliclass

    model, tokenizer = _load(path)
    pipeline = gliclass.ZeroShotClassificationPipeline(
        model, tokenizer, device="cpu", progress_bar=False, max_length=512
    )
    results = pipeline(TEXTS, LABELS, threshold=0.0)
    assert len(results) == len(TEXTS)
    rows = []
    for result in results:
        by_label = {item["label"]: item["score"] for item in result}
        assert sorted(by_label) == sorted(LABELS)
        rows.append([by_label[label] for label in LABELS])
    return rows


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return (sum((value - mean) ** 2 for value in values) / len(values)) ** 0.5


def test_variants_cover_every_axis():
    uni = [v for v in VARIANTS if v["architecture"] == "uni-encoder"]
    assert {v["backbone"] for v in VARIANTS} == set(BACKBONES)
    assert {v["architecture"] for v in VARIANTS} == set(ARCHITECTURES)
    assert {v["pooling"] for v in VARIANTS} == set(POOLINGS)
    assert {v["scorer"] for v in VARIANTS} == set(SCORERS)
    assert {v["prompt_first"] for v in VARIANTS} == {True, False}
    # where the label prompt sits changes what "first" and "last" pool, so each pooling meets both orders
    for pooling in POOLINGS:
        assert {v["prompt_first"] for v in uni if v["pooling"] == pooling} == {True, False}, pooling
    for backbone in BACKBONES:
        assert {v["architecture"] for v in VARIANTS if v["backbone"] == backbone} == set(ARCHITECTURES)
    assert 12 <= len(VARIANTS) <= 16


def test_variant_ids_are_unique_and_variants_are_make_tiny_checkpoint_arguments():
    ids = [variant_id(v) for v in VARIANTS]
    assert len(set(ids)) == len(ids)
    assert all(" " not in i for i in ids)
    parameters = inspect.signature(make_tiny_checkpoint).parameters
    for variant in VARIANTS:
        assert set(variant) <= set(parameters)


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_variant_builds_loads_and_classifies(variant, tmp_path):
    path = make_tiny_checkpoint(tmp_path / "model", **variant)
    assert path == (tmp_path / "model").resolve()
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in path.iterdir()
    }

    model, _ = _load(path)
    config = model.config
    assert config.architecture_type == variant["architecture"]
    assert config.prompt_first == variant["prompt_first"]
    assert config.pooling_strategy == variant["pooling"]
    assert config.scorer_type == variant["scorer"]
    assert config.encoder_config.model_type == variant["backbone"]
    if variant["architecture"] == "bi-encoder":
        assert config.label_model_config.model_type == variant["backbone"]
        assert Path(config.label_model_name) == path

    scores = _scores(path)
    flat = [score for row in scores for score in row]
    # not the ~0.5 everywhere that a default init gives
    assert max(abs(score - 0.5) for score in flat) > 0.1
    # labels get different scores for the same text
    assert sum(_std(row) for row in scores) / len(scores) > 0.02
    # texts get different scores
    pairs = [(row, other) for i, row in enumerate(scores) for other in scores[i + 1 :]]
    assert max(abs(a - b) for row, other in pairs for a, b in zip(row, other)) > 0.05
    # and most scores are not saturated at 0 or 1
    assert sum(0.01 < score < 0.99 for score in flat) >= len(flat) / 2


def _state_dict(path: Path) -> dict:
    model, _ = _load(path)
    return model.state_dict()


@pytest.mark.parametrize("backbone", BACKBONES)
def test_same_seed_gives_identical_checkpoints(backbone, tmp_path):
    import torch

    # the caller's RNG state must neither matter nor change
    torch.manual_seed(1)
    first = make_tiny_checkpoint(tmp_path / "a", backbone=backbone, seed=7)
    after_first = torch.rand(3)
    torch.manual_seed(1)
    torch.rand(10)
    second = make_tiny_checkpoint(tmp_path / "b", backbone=backbone, seed=7)

    torch.manual_seed(1)
    assert torch.equal(torch.rand(3), after_first)

    a, b = _state_dict(first), _state_dict(second)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()


def test_different_seed_gives_different_weights(tmp_path):
    import torch

    a = _state_dict(make_tiny_checkpoint(tmp_path / "a", seed=0))
    b = _state_dict(make_tiny_checkpoint(tmp_path / "b", seed=1))
    assert a.keys() == b.keys()
    differing = [key for key in a if not torch.equal(a[key], b[key])]
    assert any("word_embeddings" in key for key in differing)
    assert any("encoder.layer" in key for key in differing)


def test_weights_are_redrawn_not_default(tmp_path):
    path = make_tiny_checkpoint(tmp_path / "model", weight_std=0.25)
    state = _state_dict(path)
    query = state["model.encoder_model.encoder.layer.0.attention.self.query.weight"]
    assert 0.2 < query.std().item() < 0.3
    norm = state["model.encoder_model.encoder.layer.0.output.LayerNorm.weight"]
    assert bool((norm == 1).all())


@pytest.mark.parametrize("backbone", BACKBONES)
def test_marker_tokens_are_single_ids_matching_the_config(backbone, tmp_path):
    from transformers import AutoTokenizer

    path = make_tiny_checkpoint(tmp_path / "model", backbone=backbone, architecture="bi-encoder")
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = json.loads((path / "config.json").read_text())

    marker_ids = tokenizer.convert_tokens_to_ids([LABEL_MARK, SEP_MARK, EXAMPLE_MARK])
    indices = ["class_token_index", "text_token_index", "example_token_index"]
    assert marker_ids == [config[index] for index in indices]
    assert tokenizer.unk_token_id not in marker_ids
    assert len(set(marker_ids)) == 3

    ids = tokenizer(f"{LABEL_MARK}sports{LABEL_MARK}politics{SEP_MARK}Some text")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert ids.count(config["class_token_index"]) == 2
    assert ids.count(config["text_token_index"]) == 1
    assert tokens[1:6] == [LABEL_MARK, "sports", LABEL_MARK, "politics", SEP_MARK]
    assert tokenizer.unk_token_id not in ids
    example = tokenizer(f"{EXAMPLE_MARK}a text \nLabels:\n sports{SEP_MARK}")["input_ids"]
    assert example.count(config["example_token_index"]) == 1

    # one embedding row per token, markers included
    assert config["vocab_size"] == len(tokenizer) == config["encoder_config"]["vocab_size"]
    assert config["label_model_config"]["vocab_size"] == len(tokenizer)
    assert 1000 <= len(tokenizer) <= 2000
    assert config["encoder_config"]["pad_token_id"] == tokenizer.pad_token_id
    # ModernBERT's model takes no token_type_ids, and neither does its tokenizer return them
    assert ("token_type_ids" in tokenizer("x")) == (backbone != "modernbert")


def test_tokenizer_settings(tmp_path):
    from transformers import AutoTokenizer

    path = make_tiny_checkpoint(tmp_path / "model", max_length=128)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.model_max_length == 128
    assert json.loads((path / "config.json").read_text())["encoder_config"]["max_position_embeddings"] == 128
    assert [tokenizer.cls_token, tokenizer.sep_token, tokenizer.pad_token, tokenizer.unk_token] == [
        "[CLS]",
        "[SEP]",
        "[PAD]",
        "[UNK]",
    ]
    assert tokenizer.mask_token == "[MASK]"
    # lowercasing WordPiece: common words are whole tokens, unknown ones are spelled out rather than [UNK]
    assert tokenizer.tokenize("The Championship") == ["the", "championship"]
    assert tokenizer.unk_token not in tokenizer.tokenize("Zyxwvut qwerty 42!")
    batch = tokenizer(["short", "a somewhat longer text"], padding="longest")
    assert batch["input_ids"][0][-1] == tokenizer.pad_token_id


def test_custom_corpus(tmp_path):
    from transformers import AutoTokenizer

    corpus = ["Quokkas and wombats live in Australia."] * 3 + ["Wombats dig burrows; quokkas smile."]
    path = make_tiny_checkpoint(tmp_path / "model", corpus=iter(corpus))
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.tokenize("quokkas wombats") == ["quokkas", "wombats"]
    assert len(tokenizer) < 1000


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError, match="backbone"):
        make_tiny_checkpoint(tmp_path / "a", backbone="gpt2")
    with pytest.raises(ValueError, match="architecture"):
        make_tiny_checkpoint(tmp_path / "b", architecture="decoder-kv")
    with pytest.raises(ValueError, match="num_heads"):
        make_tiny_checkpoint(tmp_path / "c", hidden_size=30, num_heads=4)


def test_importing_the_module_is_cheap():
    code = (
        "import sys, gliclass_pipelines.testing.checkpoints as t; "
        "heavy = [m for m in ('torch', 'transformers', 'tokenizers', 'gliclass') if m in sys.modules]; "
        "assert not heavy, heavy; assert t.VARIANTS"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
