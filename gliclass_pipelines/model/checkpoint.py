"""Checking a checkpoint folder before anything is loaded, and loading it through the reference package.

A checkpoint never runs its own code: every ``from_pretrained`` gets ``trust_remote_code=False`` and
reads safetensors only, and :func:`check_checkpoint_dir` refuses, before loading, a checkpoint that
declares ``auto_map``, an encoder type transformers does not know, pickle weights only, special files
(devices, FIFOs) or an endless number of files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.errors import ModelLoadError, UnsupportedModelError
from gliclass_pipelines.model.combinations import unsupported_features
from gliclass_pipelines.model.fields import ENCODER_DECODERS, field_problems

MAX_JSON_BYTES = 64 * 1024 * 1024  # a config or tokenizer config is kilobytes
MAX_CHECKPOINT_FILES = 1_000  # a checkpoint folder holds a handful of files
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_checkpoint_dir(directory: Path, spec: str) -> dict[str, Any]:
    """Read and check a checkpoint's files before anything is loaded. Refuse what this library does not run.

    Refused with UnsupportedModelError: a config that is not GLiClass or uses an unsupported architecture;
    custom code (``auto_map`` in config.json, its encoder/label configs or a tokenizer_config.json, or an
    encoder ``model_type`` transformers does not know, for which the reference would call
    ``AutoConfig.from_pretrained(..., trust_remote_code=True)``); pickle weights without safetensors.
    """
    name = shorten(spec)
    config_file = directory / "config.json"
    try:
        is_dir, has_config = directory.is_dir(), config_file.is_file()
    except OSError as exc:  # a name too long, a loop of links...
        raise ModelLoadError(f"model '{name}': cannot read {shorten(directory)} ({exc.strerror})") from exc
    if not is_dir:
        raise ModelLoadError(f"model '{name}': directory {shorten(directory)} does not exist")
    _refuse_special_files(directory, name)
    if not has_config:
        raise ModelLoadError(
            f"model '{name}': {shorten(config_file)} is missing. A GLiClass checkpoint directory holds "
            "config.json, the weights (model.safetensors) and the tokenizer files, as written by "
            "save_pretrained."
        )
    config = _read_json(config_file, name)
    if not isinstance(config, dict) or config.get("model_type") != "GLiClass":
        raise UnsupportedModelError(
            f"model '{name}': {config_file} does not describe a GLiClass model "
            f"(model_type={shorten(repr(config.get('model_type') if isinstance(config, dict) else None))})"
        )
    _refuse_unsupported_features(config, name)
    _refuse_custom_code(directory, config, name)
    _refuse_pickle_weights(directory, name)
    return config


def _read_json(path: Path, name: str) -> Any:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            raise ModelLoadError(f"model '{name}': {path} is larger than {MAX_JSON_BYTES:,} bytes")
        return json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelLoadError(f"model '{name}': {path} is not valid JSON ({shorten(exc)})") from exc


def _refuse_special_files(directory: Path, name: str) -> None:
    """Refuse a device, FIFO or socket among the checkpoint's files (/dev/zero as tokenizer.json reads
    forever), and a folder of more than MAX_CHECKPOINT_FILES entries."""
    entries = [*directory.iterdir(), *(directory / "label_tokenizer").glob("*")]
    if len(entries) > MAX_CHECKPOINT_FILES:
        raise ModelLoadError(
            f"model '{name}': {shorten(directory)} holds more than {MAX_CHECKPOINT_FILES:,} entries; "
            "a checkpoint holds a few files"
        )
    for entry in entries:
        if not entry.is_file() and not entry.is_dir():
            raise ModelLoadError(
                f"model '{name}': {shorten(entry)} is not a regular file (a device, FIFO, socket or "
                "broken link); a checkpoint holds regular files only"
            )


def _refuse_unsupported_features(config: dict[str, Any], name: str) -> None:
    """Refuse, naming every one, the features this library does not run: architecture, scorer and pooling
    or their combination (gliclass_pipelines.model.combinations), then the config fields
    gliclass_pipelines.model.fields refuses."""
    problems = [shorten(problem, 400) for problem in unsupported_features(config) + field_problems(config)]
    if problems:
        raise UnsupportedModelError(
            f"model '{name}': not supported by gliclass-pipelines: {'; '.join(problems)}"
        )


def _refuse_custom_code(directory: Path, config: dict[str, Any], name: str) -> None:
    """Refuse a checkpoint that would make transformers import Python code from it (or from the Hub)."""
    sections: dict[str, Any] = {
        "config.json": config,
        "config.json encoder_config": config.get("encoder_config"),
        "config.json label_model_config": config.get("label_model_config"),
    }
    for file in (
        "tokenizer_config.json",
        "label_tokenizer/tokenizer_config.json",
        "label_tokenizer/config.json",
    ):
        if (directory / file).is_file():
            sections[file] = _read_json(directory / file, name)
    for where, section in sections.items():
        if isinstance(section, dict) and section.get("auto_map"):
            raise UnsupportedModelError(
                f"model '{name}': {where} declares auto_map {shorten(repr(section['auto_map']))}, custom "
                "Python code that transformers would import from the checkpoint. gliclass-pipelines never "
                "runs a checkpoint's code (trust_remote_code=False); use a checkpoint built from the model "
                "types transformers ships."
            )
    known = _known_model_types()
    for field in ("encoder_config", "label_model_config"):
        section = config.get(field)
        if section is None:
            continue
        model_type = section.get("model_type", "deberta-v2") if isinstance(section, dict) else None
        if not isinstance(model_type, str) or model_type not in known:
            raise UnsupportedModelError(
                f"model '{name}': {field} has model_type {shorten(repr(model_type))}, which this "
                "transformers version does not know; loading it would need the checkpoint's own code "
                "(the reference calls AutoConfig.from_pretrained(..., trust_remote_code=True)), which "
                "gliclass-pipelines never runs."
            )


def _known_model_types() -> Any:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    return CONFIG_MAPPING


def _refuse_pickle_weights(directory: Path, name: str) -> None:
    if any(directory.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise UnsupportedModelError(_pickle_message(name, pickles))


def _pickle_message(name: str, files: list[str]) -> str:
    return (
        f"model '{name}': refused the pickle weights {', '.join(files)}: loading a pickle file can run "
        "code, so gliclass-pipelines loads only safetensors weights. Convert the checkpoint where you "
        "trust it (load it, then save_pretrained(dir, safe_serialization=True)) and pass the "
        "directory with model.safetensors."
    )


def load_checkpoint(directory: Path, spec: str) -> tuple[Any, Any, Any]:
    """The model, its tokenizer and (bi-encoder) label tokenizer, through the reference's loading code.

    Never runs code from the checkpoint: it is checked first, then every from_pretrained gets
    ``trust_remote_code=False``, and the weights are read from safetensors only.
    """
    from gliclass import GLiClassModel
    from transformers import AutoTokenizer

    from gliclass_pipelines.model.checkpoint_checks import check_before_loading, check_loaded

    config = check_checkpoint_dir(directory, spec)
    name = shorten(spec)
    with _quiet_transformers():
        check_before_loading(directory, config, name)
        try:
            model, report = GLiClassModel.from_pretrained(
                str(directory), trust_remote_code=False, use_safetensors=True, output_loading_info=True
            )
        except Exception as exc:
            raise ModelLoadError(_weights_message(directory, name, exc)) from exc
        tie_token_embeddings(model)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False)
        except Exception as exc:
            raise ModelLoadError(
                f"model '{name}': loading the tokenizer in {shorten(directory)} failed: {shorten(exc, 500)}"
            ) from exc
        label_tokenizer = None
        if config.get("architecture_type") in ("bi-encoder", "bi-encoder-fused"):
            label_tokenizer = _label_tokenizer(config.get("label_model_name"), directory, name)
        check_loaded(model, report, tokenizer, label_tokenizer, name)
    return model, tokenizer, label_tokenizer


def _weights_message(directory: Path, name: str, exc: BaseException) -> str:
    import pickle

    chain, cause = [], exc
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(e, pickle.UnpicklingError) or "weights_only" in str(e) for e in chain):
        return _pickle_message(
            name, sorted(p.name for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES)
        )
    weights = sorted(p.name for p in directory.glob("*.safetensors")) or ["(no *.safetensors file)"]
    return (
        f"model '{name}': loading the weights {', '.join(weights)} in {shorten(directory)} failed: "
        f"{shorten(exc, 500)}. The checkpoint may be truncated or corrupt: download or copy it again."
    )


def _label_tokenizer(label_model: str | None, directory: Path, name: str) -> Any:
    from transformers import AutoTokenizer

    candidates = [c for c in (label_model, directory / "label_tokenizer") if c and os.path.isdir(c)]
    candidates += [label_model] if label_model and not os.path.isabs(str(label_model)) else []
    for candidate in candidates:
        try:
            return AutoTokenizer.from_pretrained(str(candidate), trust_remote_code=False)
        except Exception as exc:  # try the next candidate, report the last failure
            error = exc
    raise ModelLoadError(
        f"model '{name}': the bi-encoder label tokenizer {shorten(repr(label_model))} could not be loaded"
        + (f" ({shorten(error, 500)})" if candidates else "")
        + "; put it in a label_tokenizer/ folder beside config.json or make label_model_name reachable"
    )


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Loading prints progress bars and a config-type warning per model; workers' logs need neither."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def tie_token_embeddings(model: Any) -> None:
    """Tie a T5-style backbone's encoder and decoder token embeddings to its shared matrix, as they were
    when the checkpoint was saved (it holds only ``shared.weight``). The reference's loading (gliclass
    0.1.21 on transformers 5) re-ties the encoder's only and leaves the decoder's random, so its scores
    change from one load to the next."""
    if getattr(model.config, "architecture_type", None) not in ENCODER_DECODERS:
        return
    backbone = model.model.encoder_decoder_model
    if not getattr(backbone.config, "tie_word_embeddings", True) or not hasattr(backbone, "shared"):
        return
    for part in (getattr(backbone, "encoder", None), getattr(backbone, "decoder", None)):
        if part is not None and getattr(part, "embed_tokens", None) is not None:
            part.embed_tokens.weight = backbone.shared.weight
