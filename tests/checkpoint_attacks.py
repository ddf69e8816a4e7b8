"""Builders of damaged and hostile checkpoints, each a copy of a working tiny checkpoint with one change.

Used by tests/test_reliability_safety_checkpoint.py; each builder returns the copy's path.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

WEIGHTS = "model.safetensors"


def copy_checkpoint(tiny: Path, where: Path, name: str) -> Path:
    return Path(shutil.copytree(tiny, where / name))


def edit_json(path: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def rewrite_weights(path: Path, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Rewrite model.safetensors with ``change(tensors)`` (a dict of name -> torch tensor)."""
    from safetensors.torch import load_file, save_file

    tensors = change(load_file(path / WEIGHTS))
    save_file(tensors, path / WEIGHTS, metadata={"format": "pt"})


def keep_half_of_the_tensors(tensors: dict[str, Any]) -> dict[str, Any]:
    names = sorted(tensors)
    return {name: tensors[name] for name in names[: len(names) // 2]}


def add_a_tensor(tensors: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {**tensors, "model.extra_head.weight": torch.zeros(4, 4)}


def as_older_transformers_saved(tensors: dict[str, Any]) -> dict[str, Any]:
    """A BERT checkpoint as older transformers versions wrote it: LayerNorm.gamma / beta for weight / bias,
    and the embeddings' position_ids and token_type_ids buffers saved with the weights."""
    import torch

    renamed = {
        name.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        ): tensor
        for name, tensor in tensors.items()
    }
    embeddings = "model.encoder_model.embeddings."
    renamed[embeddings + "position_ids"] = torch.arange(512)[None]
    renamed[embeddings + "token_type_ids"] = torch.zeros(1, 512, dtype=torch.long)
    return renamed


def remove_marker(path: Path, marker: str) -> None:
    """Take a marker token out of tokenizer.json and tokenizer_config.json (which would re-add it)."""

    def tokenizer(data: dict[str, Any]) -> None:
        data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != marker]

    def tokenizer_config(data: dict[str, Any]) -> None:
        data["extra_special_tokens"] = [t for t in data.get("extra_special_tokens", []) if t != marker]

    edit_json(path / "tokenizer.json", tokenizer)
    edit_json(path / "tokenizer_config.json", tokenizer_config)


def renumber_word(path: Path, word: str, new_id: int) -> None:
    """Give one vocabulary word an id past the embedding matrix."""

    def change(data: dict[str, Any]) -> None:
        data["model"]["vocab"][word] = new_id

    edit_json(path / "tokenizer.json", change)


def backtracking_pre_tokenizer(path: Path, pattern: str = "(a+)+$") -> None:
    """A Split pre-tokenizer whose regex backtracks catastrophically on a run of 'a' not at the end."""

    def change(data: dict[str, Any]) -> None:
        split = {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}
        data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [split, data["pre_tokenizer"]]}

    edit_json(path / "tokenizer.json", change)


def huge_encoder_config(path: Path, hidden: int = 1024, layers: int = 10_000) -> None:
    """A config asking for an encoder far larger than the weights file holds."""

    def change(data: dict[str, Any]) -> None:
        data["encoder_config"].update(
            hidden_size=hidden, num_hidden_layers=layers, intermediate_size=4 * hidden, num_attention_heads=16
        )

    edit_json(path / "config.json", change)


def huge_vocabulary(path: Path, entries: int) -> None:
    """tokenizer.json with `entries` extra vocabulary words (the markers are then renumbered past them)."""

    def change(data: dict[str, Any]) -> None:
        vocab = data["model"]["vocab"]
        start = len(vocab)
        vocab.update((f"w{i}", start + i) for i in range(entries))
        for offset, token in enumerate(t for t in data["added_tokens"] if t["content"] not in vocab):
            if token["id"] >= start:
                token["id"] = start + entries + offset

    edit_json(path / "tokenizer.json", change)
