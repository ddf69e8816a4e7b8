"""Checks that a checkpoint's parts belong together, run around loading it (from ``load_checkpoint``).

Before anything is built (:func:`check_before_loading`): the tokenizer files' size against the embedding
matrix the config declares, and the parameters the config asks for against the elements the safetensors
headers hold (read without the tensor data), so a config asking for ten thousand layers over a small file
is refused in milliseconds instead of filling memory with random weights. After loading
(:func:`check_loaded`): transformers' loading report, so that no weight the model needs is missing (it
would be left random: every label scores about 0.5) and no weight is left over, then the tokenizer checks
of :mod:`gliclass_pipelines.model.tokenizer_checks`.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.errors import ModelLoadError
from gliclass_pipelines.model.tokenizer_checks import check_markers, check_tokenizer, check_tokenizer_files

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 100_000_000  # the safetensors format's own limit
PARAMETER_FACTOR, PARAMETER_SLACK = 2, 1 << 20  # the config may ask for 2x the file's elements + 1M at most
SHOWN_KEYS = 5
_ITEM_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2}
_ITEM_BYTES |= {"U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_SUBMODELS = ("encoder_config", "label_model_config")


def check_before_loading(directory: Path, config: dict[str, Any], name: str) -> None:
    check_tokenizer_files(directory, _rows(config, "encoder_config"), name)
    if (directory / "label_tokenizer").is_dir():
        check_tokenizer_files(directory / "label_tokenizer", _rows(config, "label_model_config"), name)
    check_parameter_count(directory, config, name)


def check_loaded(model: Any, report: dict[str, Any], tokenizer: Any, label_tokenizer: Any, name: str) -> None:
    check_weights_report(model, report, name)
    inner = model.model
    backbone = inner.encoder_decoder_model if hasattr(inner, "encoder_decoder_model") else inner.encoder_model
    check_tokenizer(tokenizer, _embedding_rows(backbone), name)
    check_markers(model.config, tokenizer, name)
    if label_tokenizer is not None:
        check_tokenizer(label_tokenizer, _embedding_rows(inner.label_encoder), name, "label tokenizer")


def _rows(config: dict[str, Any], field: str) -> int | None:
    """The embedding rows the config declares for a submodel (GLiClass sizes the encoder's to vocab_size)."""
    section = config.get(field) if isinstance(config.get(field), dict) else {}
    rows = config.get("vocab_size") if field == "encoder_config" else None
    rows = rows if isinstance(rows, int) and rows > 0 else section.get("vocab_size")
    return rows if isinstance(rows, int) and not isinstance(rows, bool) and rows > 0 else None


def _embedding_rows(encoder: Any) -> int:
    return int(encoder.get_input_embeddings().num_embeddings)


# ---------------------------------------------------------------------------------------------------------
# Weights


def check_weights_report(model: Any, report: dict[str, Any], name: str) -> None:
    """Refuse weights that lack a key the model needs (tied copies aside) or hold keys it has no place for."""
    missing = _untied(model, set(report.get("missing_keys") or ()))
    unexpected = set(report.get("unexpected_keys") or ()) - _computed_buffers(model)
    problems = [
        (what, sorted(str(k) for k in keys))
        for what, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("of the wrong shape", report.get("mismatched_keys") or ()),
        )
        if keys
    ]
    if problems:
        said = "; ".join(f"{len(keys):,} {what}: {_some(keys)}" for what, keys in problems)
        why = (
            "Loaded anyway, the missing weights would be random and the scores meaningless"
            if missing
            else "Weights the model has no place for mean they were saved from another model"
        )
        raise ModelLoadError(
            f"model '{name}': its weights do not match the model its config.json describes ({said}). "
            f"{why}. Copy or download the checkpoint again, or save it again with save_pretrained."
        )


def _untied(model: Any, missing: set[str]) -> set[str]:
    """The missing keys that are not tied to (the same tensor as) a key the weights held."""
    if not missing:
        return missing
    state = model.state_dict(keep_vars=True)
    loaded = {t.data_ptr() for k, t in state.items() if k not in missing and t.numel()}
    return {k for k in missing if k not in state or not state[k].numel() or state[k].data_ptr() not in loaded}


def _computed_buffers(model: Any) -> set[str]:
    """The model's non-persistent buffers (position_ids, token_type_ids...): it computes them and never reads
    them from the weights, which older transformers versions saved them in."""
    saved = set(model.state_dict(keep_vars=True))
    return {name for name, _ in model.named_buffers() if name not in saved}


def _some(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f" and {len(keys) - SHOWN_KEYS:,} more" if len(keys) > SHOWN_KEYS else "")


def check_parameter_count(directory: Path, config: dict[str, Any], name: str) -> None:
    """Refuse a config asking for far more parameters than the weights files hold elements."""
    files = weights_files(directory, name)
    if not files:
        return
    held = sum(header_elements(path, directory, name) for path in files)
    wanted = expected_parameters(config)
    if wanted is not None and wanted > PARAMETER_FACTOR * held + PARAMETER_SLACK:
        raise ModelLoadError(
            f"model '{name}': config.json describes a model of about {wanted:,} parameters, but "
            f"{', '.join(p.name for p in files)} hold{'s' if len(files) == 1 else ''} {held:,} values. "
            "Built, the rest would be random (and could fill this machine's memory). The config and the "
            "weights do not belong together: copy the checkpoint again."
        )


def weights_files(directory: Path, name: str) -> list[Path]:
    """The safetensors files transformers reads: model.safetensors, else the shards its index names."""
    if (directory / "model.safetensors").is_file():
        return [directory / "model.safetensors"]
    index = directory / "model.safetensors.index.json"
    if not index.is_file():
        return []
    try:
        with open(index, "rb") as handle:
            shards = set(json.loads(handle.read(MAX_HEADER_BYTES + 1))["weight_map"].values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise ModelLoadError(
            f"model '{name}': {shorten(index)} is not a safetensors index ({shorten(exc)})"
        ) from exc
    if not all(isinstance(s, str) and s == os.path.basename(s) and s not in ("", ".", "..") for s in shards):
        raise ModelLoadError(f"model '{name}': {shorten(index)} names a shard outside the checkpoint folder")
    return [directory / shard for shard in sorted(shards)]


def header_elements(path: Path, directory: Path, name: str) -> int:
    """How many values a safetensors file holds, from its header alone (checked against the file's size)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            length = int.from_bytes(handle.read(8), "little") if size >= 8 else -1
            if not 0 < length <= min(MAX_HEADER_BYTES, size - 8):
                raise ValueError(f"a header of {length:,} bytes in a file of {size:,}")
            header = json.loads(handle.read(length))
        return _count(header, size - 8 - length)
    except (OSError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise ModelLoadError(
            f"model '{name}': the weights {path.name} in {shorten(directory)} are not a valid safetensors "
            f"file ({shorten(exc)}). The checkpoint may be truncated or corrupt: download or copy it again."
        ) from exc


def _count(header: dict[str, Any], data_bytes: int) -> int:
    total = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        shape, (begin, end) = entry["shape"], entry["data_offsets"]
        if (
            not all(isinstance(d, int) and d >= 0 for d in (*shape, begin, end))
            or not begin <= end <= data_bytes
        ):
            raise ValueError(f"tensor {shorten(key, 80)} has shape {shorten(shape)} at {begin}-{end}")
        elements = math.prod(shape)
        item = _ITEM_BYTES.get(entry.get("dtype"))
        if item is not None and elements * item != end - begin:
            raise ValueError(
                f"tensor {shorten(key, 80)} of shape {shorten(shape)} spans {end - begin:,} bytes"
            )
        total += elements
    return total


def expected_parameters(config: dict[str, Any]) -> int | None:
    """The parameters the config asks for, counted on the meta device (no memory) with each encoder cut to
    one layer and to two, so the count costs the same for ten layers or ten thousand. None if it cannot
    be built (loading then fails with its own error)."""
    try:
        counts = {f: _layer_count(config[f]) for f in _SUBMODELS if isinstance(config.get(f), dict)}
        ones = {f: 1 for f in counts}
        base = _meta_parameters(config, ones)
        total = base
        for field, count in counts.items():
            if count > 1:
                total += (count - 1) * (_meta_parameters(config, {**ones, field: 2}) - base)
        return total
    except Exception as exc:  # an unbuildable config: from_pretrained reports it
        logger.debug("could not count the parameters of a config: %s", exc)
        return None


def _layer_field(section: dict[str, Any]) -> str:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config_class = CONFIG_MAPPING[section.get("model_type", "deberta-v2")]
    return getattr(config_class, "attribute_map", {}).get("num_hidden_layers", "num_hidden_layers")


def _layer_count(section: dict[str, Any]) -> int:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    field = _layer_field(section)
    if field in section:
        return int(section[field])
    return int(getattr(CONFIG_MAPPING[section.get("model_type", "deberta-v2")](), field))


def _meta_parameters(config: dict[str, Any], layers: dict[str, int]) -> int:
    import torch
    from gliclass import GLiClassModel, GLiClassModelConfig

    config = copy.deepcopy(config)
    for field, count in layers.items():
        section = config[field]
        total = _layer_count(section)
        for key, value in list(section.items()):  # per-layer lists (layer_types...) follow the layer count
            if isinstance(value, list) and len(value) == total:
                section[key] = value[:count]
        section[_layer_field(section)] = count
    with torch.device("meta"):
        model = GLiClassModel(GLiClassModelConfig.from_dict(config))
    return sum(p.numel() for p in model.parameters())
