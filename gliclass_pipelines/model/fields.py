"""Every field of the reference's ``GLiClassModelConfig``, and what gliclass-pipelines does with it.

One table, :data:`CONFIG_FIELDS`, read by the load-time check (:func:`field_problems`) and by the tests
(``tests/test_model_fields.py``), which fail when the reference grows a field this table does not
classify, or when its forward or pipeline reads a field classified as not affecting inference:

- ``honoured``: inference gives the reference's scores with any value the reference runs (parity tests);
- ``refused-unless-default``: a checkpoint that sets it is refused at load, naming the field;
- ``training-only``: read by training code only (losses, initialisation, dropout); inference ignores it,
  as the reference's does;
- ``other-architectures``: read only by architectures that are refused at load.

Standard library only: the check runs on config.json before anything is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HONOURED = "honoured"
REFUSED = "refused-unless-default"
TRAINING = "training-only"
OTHER_ARCHITECTURES = "other-architectures"
STATUSES = (HONOURED, REFUSED, TRAINING, OTHER_ARCHITECTURES)
LABEL_ALLOCATIONS = ("dynamic", "fixed")  # or a positive integer

ENCODER_DECODERS = ("encoder-decoder", "encoder-decoder-cls")  # T5-style: text and labels in two sequences


@dataclass(frozen=True)
class FieldUse:
    """What gliclass-pipelines does with one config field, and why. ``default`` is the reference's."""

    status: str
    why: str
    default: Any = None


def _h(why: str, default: Any = None) -> FieldUse:
    return FieldUse(HONOURED, why, default)


def _t(why: str, default: Any = None) -> FieldUse:
    return FieldUse(TRAINING, why, default)


def _o(default: Any = None) -> FieldUse:
    return FieldUse(OTHER_ARCHITECTURES, "read by the decoder-kv architecture only", default)


_BUILT = "builds the reference's modules, which the forward runs unchanged"
_RECURRENT = {
    "recurrent_steps": 1,
    "recurrent_min_steps": 1,
    "recurrent_inference": True,
    "recurrent_inference_max_steps": None,
    "recurrent_halt_threshold": 0.01,
    "recurrent_improvement_coef": 0.1,
    "recurrent_improvement_margin": 0.05,
    "recurrent_bptt_steps": None,
    "recurrent_read_text": False,
    "recurrent_confidence_coef": 0.0,
    "recurrent_confidence_mode": "relative",
    "recurrent_confidence_margin": 0.0,
}

CONFIG_FIELDS: dict[str, FieldUse] = {
    "encoder_config": _h("the encoder, " + _BUILT),
    "encoder_model": _h("loading: the reference's from_pretrained reads it"),
    "label_model_config": _h("the bi-encoders' (plain and fused) label encoder, " + _BUILT),
    "label_model_name": _h("the bi-encoders' label tokenizer is loaded from it (or label_tokenizer/)"),
    "class_token_index": _h("the <<LABEL>> token whose states the reference's feature extraction reads", -1),
    "text_token_index": _h("the <<TEXT>> token of segment embeddings", -1),
    "example_token_index": _h("the <<EXAMPLE>> token of segment embeddings", -1),
    "ignore_index": _t("the loss's ignored target", -100),
    "hidden_size": _h("the projectors' and scorer's width, " + _BUILT),
    "projector_hidden_act": _h("the projectors' activation, " + _BUILT, "gelu"),
    "vocab_size": _h("the embedding size, " + _BUILT),
    "problem_type": _t(
        "selects the loss; inference takes multi-label or single-label from the caller, as the reference's "
        "pipeline does",
        "single_label_classification",
    ),
    "max_num_classes": _h("the label slots of max_labels_alloc='fixed' and of the encoder-decoders", 25),
    "use_lstm": FieldUse(REFUSED, "the forward runs no LSTM over the text states", False),
    "initializer_range": _t("initialisation of weights the checkpoint does not hold", 0.03),
    "scorer_type": _h("one of the supported scorers (combinations.SUPPORTED_SCORERS)", "simple"),
    "scorer_num_heads": _h("the scorer's heads, " + _BUILT, 16),
    "scorer_mlp_hidden_size": _h("the scorer's width, " + _BUILT, 1024),
    "scorer_attn_dropout": _t("dropout, off at inference", 0.1),
    "pooling_strategy": _h(
        "one of the supported poolings, masked (combinations.SUPPORTED_POOLINGS)", "first"
    ),
    "class_token_pooling": _h("the reference's feature extraction reads it", "first"),
    "focal_loss_alpha": _t("the loss", 0.5),
    "focal_loss_gamma": _t("the loss", 2),
    "focal_loss_reduction": _t("the loss"),
    "logit_scale_init_value": _t("initialisation; the checkpoint holds the trained logit_scale", 2.6592),
    "normalize_features": _h("features are normalised and logits scaled as in the reference", False),
    "extract_text_features": FieldUse(
        REFUSED, "the text after the <<TEXT>> token is not extracted as the text features", False
    ),
    "max_labels_alloc": _h(
        "label slots per sequence: one per label ('dynamic'), max_num_classes ('fixed') or the integer; "
        "a label set larger than the allocation is scored in groups of at most that many labels",
        "dynamic",
    ),
    "contrastive_loss_coef": _t("the loss", 0),
    "architecture_type": _h(
        "one of the supported architectures (combinations.SUPPORTED_ARCHITECTURES)", "uni-encoder"
    ),
    "prompt_first": _h("the input layout: labels before or after the text", False),
    "squeeze_layers": FieldUse(
        REFUSED,
        "the reference gliclass 0.1.21 cannot run it either: its LayerwiseAttention takes num_hidden_layers "
        "inputs but the encoder returns num_hidden_layers + 1 hidden states, so every forward raises "
        "RuntimeError",
        False,
    ),
    "layer_wise": _h(
        "trains a loss on every layer; at inference the reference scores the last layer, with it on or off",
        False,
    ),
    "encoder_layer_id": _h("which hidden state the uni-encoder scores", -1),
    "embed_class_token": _h("the reference's feature extraction reads it", True),
    "dropout": _t("dropout, off at inference", 0.1),
    "use_segment_embeddings": _h("the segment embeddings are added as in the reference", False),
    "scorer_encoder_num_layers": _o(2),
    "scorer_full_sequence": _o(False),
    **{name: _o(default) for name, default in _RECURRENT.items()},
    "use_calibrator": _h("the calibrator head is applied to the logits", False),
    "calibrator_hidden_size": _h("the calibrator's width, " + _BUILT, 256),
    "calibrator_beta_max": _h("the calibrator's range, " + _BUILT, 3.0),
    "calibrator_dropout": _t("dropout, off at inference", 0.1),
    "calibrator_use_bias": _h("the calibrator's bias, " + _BUILT, False),
    "multimodal": FieldUse(REFUSED, "images and audio (decoder-kv media encoders) are not supported", False),
    "freeze_media_encoders": _t("training of the decoder-kv media encoders", True),
    "use_embedding_projection": _o(),
    # not constructor arguments: set from others, or carried in **kwargs
    "encoder_model_name": _h("loading: set from encoder_model"),
    "pad_token_id": _h("set from the encoder config; the tokenizer's pad id pads the batches"),
    "sep_token_index": _o(),
}


def field_problems(config: Mapping[str, Any]) -> list[str]:
    """What in a checkpoint's config.json this library does not run: each refused field that is set, and
    a max_labels_alloc the reference does not define. Empty when everything is honoured."""
    problems = [
        f"{name}={config[name]!r} ({use.why})"
        for name, use in CONFIG_FIELDS.items()
        if use.status == REFUSED and config.get(name)
    ]
    allocation = check_allocation(
        config.get("max_labels_alloc", "dynamic"), config.get("max_num_classes", 25)
    )
    if allocation is not None:
        problems.append(allocation)
    return problems


def check_allocation(value: Any, max_num_classes: Any) -> str | None:
    """Why a max_labels_alloc (with its max_num_classes) cannot be run exactly, or None when it can."""
    if value == "fixed":
        if not _positive_int(max_num_classes):
            return f"max_labels_alloc='fixed' with max_num_classes={max_num_classes!r} (want an integer >= 1)"
        return None
    if value in LABEL_ALLOCATIONS or _positive_int(value):
        return None
    return (
        f"max_labels_alloc={value!r} (the reference defines 'dynamic', 'fixed' and a positive integer; it "
        "would run another value as 'fixed', silently)"
    )


def allocated_slots(value: Any, max_num_classes: Any) -> int | None:
    """The label slots a uni-encoder sequence gets: None for one per label ('dynamic')."""
    if value == "fixed":
        return int(max_num_classes)
    return None if value == "dynamic" else int(value)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
