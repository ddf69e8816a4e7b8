"""Tiny random GLiClass checkpoints for tests, built offline in a fraction of a second.

``make_tiny_checkpoint`` writes a directory that loads through exactly the code path of a Hub model id::

    model = gliclass.GLiClassModel.from_pretrained(path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)

The weights are random but deliberately *not* the library's default initialisation: a default init gives
every label a score of about 0.5, so a test comparing two code paths against each other could never fail.
Here every weight matrix is re-drawn with a larger spread (so that attention mixes the label words into the
label tokens), and the scorer's output is then rescaled on a fixed probe batch so that logits centre on 0
with a standard deviation of about 1.5: scores differ clearly between labels and between texts while
staying away from 0 and 1, for every backbone, pooling and scorer.

``VARIANTS`` is a covering matrix of backbones, architectures, ``prompt_first``, pooling strategies and
scorers (every value of every axis appears at least once) for parametrized tests::

    @pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
    def test_my_code(variant, tmp_path):
        path = make_tiny_checkpoint(tmp_path / "model", **variant)

Only the standard library and the marker tokens (gliclass_pipelines.taxonomy.taxonomy) are imported at module
level; torch, tokenizers, transformers and gliclass load when a checkpoint is built.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

from gliclass_pipelines.taxonomy.labels import MARKERS
from gliclass_pipelines.testing.calibration import calibrate_logits
from gliclass_pipelines.testing.tokenizer import CORPUS, build_tokenizer

__all__ = [
    "ARCHITECTURES",
    "BACKBONES",
    "POOLINGS",
    "SCORERS",
    "VARIANTS",
    "make_tiny_checkpoint",
    "variant_id",
]


BACKBONES = ("bert", "deberta-v2", "modernbert")
MORE_BACKBONES = ("t5",)  # for the encoder-decoder architectures, outside the VARIANTS matrix
ARCHITECTURES = ("uni-encoder", "bi-encoder")
MORE_ARCHITECTURES = ("bi-encoder-fused", "encoder-decoder", "encoder-decoder-cls")  # not in VARIANTS
POOLINGS = ("first", "avg", "max", "last")
SCORERS = ("simple", "weighted-dot", "mlp", "hopfield")

_SCORER_MLP_HIDDEN_SIZE = 64


def _variant(
    backbone: str, architecture: str, prompt_first: bool, pooling: str, scorer: str
) -> dict[str, Any]:
    return {
        "backbone": backbone,
        "architecture": architecture,
        "prompt_first": prompt_first,
        "pooling": pooling,
        "scorer": scorer,
    }


# A covering set, not the full product: each backbone, architecture, pooling and scorer appears at least
# once, and each pooling appears with prompt_first both True and False in the uni-encoder (where the label
# prompt's position changes what "first" and "last" pool). The plain bi-encoder never puts labels into the
# text, so prompt_first has no effect there and stays True.
VARIANTS: tuple[dict[str, Any], ...] = (
    _variant("deberta-v2", "uni-encoder", True, "first", "simple"),
    _variant("deberta-v2", "uni-encoder", False, "first", "mlp"),
    _variant("deberta-v2", "uni-encoder", True, "avg", "simple"),
    _variant("deberta-v2", "uni-encoder", False, "avg", "hopfield"),
    _variant("modernbert", "uni-encoder", True, "first", "simple"),
    _variant("modernbert", "uni-encoder", False, "avg", "mlp"),
    _variant("modernbert", "uni-encoder", True, "last", "weighted-dot"),
    _variant("modernbert", "uni-encoder", False, "max", "weighted-dot"),
    _variant("bert", "uni-encoder", True, "max", "mlp"),
    _variant("bert", "uni-encoder", False, "avg", "weighted-dot"),
    _variant("bert", "uni-encoder", False, "last", "simple"),
    _variant("bert", "uni-encoder", True, "first", "weighted-dot"),
    _variant("deberta-v2", "bi-encoder", True, "last", "mlp"),
    _variant("modernbert", "bi-encoder", True, "avg", "simple"),
    _variant("bert", "bi-encoder", True, "max", "weighted-dot"),
    _variant("modernbert", "bi-encoder", True, "avg", "hopfield"),
)

_SHORT_NAMES = {"deberta-v2": "deberta", "uni-encoder": "uni", "bi-encoder": "bi", "weighted-dot": "wdot"}
_ID_DEFAULTS = {"backbone": "bert", "architecture": "uni-encoder", "pooling": "first", "scorer": "simple"}


def variant_id(variant: Mapping[str, Any]) -> str:
    """A short id for one entry of ``VARIANTS``, e.g. ``"deberta-uni-tf-max-wdot"`` (``pf``: prompt first,
    ``tf``: text first); use it as ``ids=variant_id`` in ``pytest.mark.parametrize``."""

    def short(key: str) -> str:
        value = str(variant.get(key, _ID_DEFAULTS[key]))
        return _SHORT_NAMES.get(value, value)

    order = "pf" if variant.get("prompt_first", True) else "tf"
    return "-".join([short("backbone"), short("architecture"), order, short("pooling"), short("scorer")])


def _bert(common: dict[str, Any], tokenizer: Any) -> Any:
    from transformers import BertConfig

    return BertConfig(**common, type_vocab_size=2)


def _deberta(common: dict[str, Any], tokenizer: Any) -> Any:
    from transformers import DebertaV2Config

    # shaped like DeBERTa-v3: relative attention only, log buckets, shared keys
    return DebertaV2Config(
        **common,
        type_vocab_size=0,
        relative_attention=True,
        position_biased_input=False,
        pos_att_type=["p2c", "c2p"],
        position_buckets=64,
        max_relative_positions=-1,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        layer_norm_eps=1e-7,
    )


def _modernbert(common: dict[str, Any], tokenizer: Any) -> Any:
    from transformers import ModernBertConfig

    return ModernBertConfig(
        **common,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        local_attention=64,
        global_attn_every_n_layers=2,
    )


def _t5(common: dict[str, Any], tokenizer: Any) -> Any:  # encoder-decoder architectures
    from transformers import T5Config

    hidden, heads = common["hidden_size"], common["num_attention_heads"]
    return T5Config(
        vocab_size=common["vocab_size"],
        d_model=hidden,
        d_kv=hidden // heads,
        d_ff=2 * hidden,
        num_layers=common["num_hidden_layers"],
        num_heads=heads,
        relative_attention_num_buckets=8,
        **dict.fromkeys(("pad_token_id", "decoder_start_token_id"), tokenizer.pad_token_id),
        eos_token_id=tokenizer.sep_token_id,
    )


_BACKBONE_CONFIGS = {"bert": _bert, "deberta-v2": _deberta, "modernbert": _modernbert, "t5": _t5}


def _backbone_config(
    backbone: str, tokenizer: Any, *, hidden_size: int, num_layers: int, num_heads: int, max_length: int
) -> Any:
    if backbone not in _BACKBONE_CONFIGS:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "intermediate_size": 2 * hidden_size,
        "max_position_embeddings": max_length,
        "pad_token_id": tokenizer.pad_token_id,
    }
    return _BACKBONE_CONFIGS[backbone](common, tokenizer)


def _redraw_weights(model: Any, *, seed: int, weight_std: float) -> None:
    """Every weight matrix from N(0, weight_std); norms at weight 1 / bias 0; all other biases 0."""
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            is_norm = (
                isinstance(module, nn.LayerNorm | nn.GroupNorm) or "norm" in type(module).__name__.lower()
            )
            for name, param in module.named_parameters(recurse=False):
                if param.ndim >= 2:
                    param.normal_(0.0, weight_std, generator=generator)
                elif param.ndim == 1 and is_norm and name == "weight":
                    param.fill_(1.0)
                elif param.ndim == 1 and name == "bias":
                    param.zero_()
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()


def _config_fields(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The extra GLiClassModelConfig fields, checked against the config's own signature."""
    import inspect

    from gliclass import GLiClassModelConfig

    if not config:
        return {}
    known = set(inspect.signature(GLiClassModelConfig.__init__).parameters) - {"self", "kwargs"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"unknown GLiClassModelConfig field(s) {', '.join(unknown)}")
    return dict(config)


def make_tiny_checkpoint(
    path: str | os.PathLike[str],
    *,
    backbone: str = "bert",
    prompt_first: bool = True,
    pooling: str = "first",
    scorer: str = "simple",
    architecture: str = "uni-encoder",
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    max_length: int = 512,
    seed: int = 0,
    weight_std: float = 0.25,
    corpus: Iterable[str] | None = None,
    config: Mapping[str, Any] | None = None,
) -> pathlib.Path:
    """Build a tiny random GLiClass model and its tokenizer, and save both into ``path``.

    Args:
        path: directory to write (created if missing); it then loads with
            ``GLiClassModel.from_pretrained(path)`` and ``AutoTokenizer.from_pretrained(path)``.
        backbone: ``"bert"``, ``"deberta-v2"`` (shaped like DeBERTa-v3) or ``"modernbert"``.
        prompt_first: whether the uni-encoder puts the label prompt before the text.
        pooling: GLiClass text pooling (``"first"``, ``"avg"``, ``"max"``, ``"last"``, ...).
        scorer: GLiClass scorer (``"simple"``, ``"weighted-dot"``, ``"mlp"``, ...).
        architecture: ``"uni-encoder"`` or ``"bi-encoder"``. A bi-encoder's label encoder uses the same
            backbone type, and its ``label_model_name`` is the absolute path of this checkpoint, so the
            reference bi-encoder pipeline finds the label tokenizer offline (moving the directory breaks
            that lookup; rebuild instead).
        hidden_size, num_layers, num_heads: backbone size; the feed-forward width is ``2 * hidden_size``.
        max_length: the tokenizer's ``model_max_length`` and the backbone's ``max_position_embeddings``.
        seed: weights are a pure function of the arguments; the caller's global torch RNG is untouched.
        weight_std: standard deviation of every re-drawn weight matrix (embeddings included); the
            default suits the default sizes. Afterwards the scorer's last layer (for ``"simple"``: the
            projectors' last layers) is shifted and rescaled so that logits on a fixed probe batch have
            mean ~0 and standard deviation ~1.5.
        corpus: strings to train the WordPiece vocabulary on; a built-in English corpus by default.
        config: more ``GLiClassModelConfig`` fields, over the ones above (``max_labels_alloc="fixed"``,
            ``layer_wise=True``, ``use_calibrator=True``...); an unknown field is a ValueError.

    Returns:
        The absolute path of the checkpoint directory.
    """
    _check_arguments(backbone, architecture, hidden_size, num_heads)
    import torch
    from gliclass import GLiClassModel, GLiClassModelConfig

    out = pathlib.Path(path).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer(CORPUS if corpus is None else list(corpus), max_length, backbone)
    sizes = {"hidden_size": hidden_size, "num_layers": num_layers, "num_heads": num_heads}
    fields = _gliclass_fields(out, tokenizer, backbone, architecture, max_length, sizes)
    fields.update(prompt_first=prompt_first, pooling_strategy=pooling, scorer_type=scorer)
    fields.update(_config_fields(config))
    model_config = GLiClassModelConfig(**fields)

    # Building the model draws its default init from the global RNG: seed it, so that any parameter the
    # re-draw below leaves alone is reproducible too, and restore the caller's RNG state afterwards.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GLiClassModel(model_config)
    model.eval()
    _redraw_weights(model, seed=seed, weight_std=weight_std)
    calibrate_logits(model, tokenizer, architecture=architecture, prompt_first=prompt_first)

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _check_arguments(backbone: str, architecture: str, hidden_size: int, num_heads: int) -> None:
    if backbone not in BACKBONES + MORE_BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}, t5")
    if architecture not in ARCHITECTURES + MORE_ARCHITECTURES:
        known = ", ".join(ARCHITECTURES + MORE_ARCHITECTURES)
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {known}")
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size ({hidden_size}) must be a multiple of num_heads ({num_heads})")


def _gliclass_fields(
    out: pathlib.Path,
    tokenizer: Any,
    backbone: str,
    architecture: str,
    max_length: int,
    sizes: dict[str, int],
) -> dict[str, Any]:
    """GLiClassModelConfig fields of a tiny checkpoint, but its text layout, pooling and scorer."""
    marker_ids = tokenizer.convert_tokens_to_ids(list(MARKERS))
    encoder_config = _backbone_config(backbone, tokenizer, max_length=max_length, **sizes)
    bi_encoder = architecture in ("bi-encoder", "bi-encoder-fused")
    fields = {
        "encoder_config": encoder_config,
        # The uni-encoder opens Path(encoder_model_name) / "adapter_config.json", so a name is required;
        # the checkpoint itself is one that resolves offline.
        "encoder_model": str(out),
        "label_model_config": (
            _backbone_config(backbone, tokenizer, max_length=max_length, **sizes) if bi_encoder else None
        ),
        "label_model_name": str(out) if bi_encoder else None,
        "architecture_type": architecture,
        "scorer_num_heads": sizes["num_heads"],
        "scorer_mlp_hidden_size": _SCORER_MLP_HIDDEN_SIZE,
        "class_token_index": marker_ids[0],
        "text_token_index": marker_ids[1],
        "example_token_index": marker_ids[2],
        "vocab_size": len(tokenizer),
        "max_num_classes": 25,
        "problem_type": "multi_label_classification",
    }
    return fields
