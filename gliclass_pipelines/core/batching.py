"""Batch planning as pure functions of lengths and keys: no model, no tokenizer, no torch.

Sequences are sorted by length and cut into batches by a padded-token budget, a row cap and a cap on
padding; identical inputs are computed once and their results handed back to every row, in order.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

#: Padded tokens per model batch. Measured on 2 CPU cores: small sorted batches beat large ones;
#: GPUs want large ones.
CPU_BATCH_TOKENS = 1024
GPU_BATCH_TOKENS = 65536
#: Estimated tokens to hand the engine in one call (a Beam batch): enough for sorting to leave little padding.
RUN_TOKENS = 65536
MAX_BATCH_ROWS = 256
MAX_PADDING = 0.1


def default_batch_tokens(device: Any) -> int:
    """The padded-token budget of one model batch on `device` (a torch.device or a name like "cuda:0")."""
    kind = getattr(device, "type", None) or str(device).split(":")[0]
    return GPU_BATCH_TOKENS if kind == "cuda" else CPU_BATCH_TOKENS


def cut_batches(
    lengths: Sequence[int], budget: int, max_rows: int = MAX_BATCH_ROWS, max_padding: float = MAX_PADDING
) -> list[list[int]]:
    """Indices of `lengths` sorted by length and cut into batches.

    A batch closes before the next (longer) sequence when its padded size (rows x longest) would pass
    `budget`, it has `max_rows` rows, or its padding would pass `max_padding` of its padded size. A
    sequence longer than the budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    keep = 1.0 - max_padding
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in order:
        length = lengths[i]  # the longest so far: lengths ascend
        padded = length * (len(current) + 1)
        if current and (padded > budget or len(current) >= max_rows or real + length < keep * padded):
            batches.append(current)
            current, real = [], 0
        current.append(i)
        real += length
    if current:
        batches.append(current)
    return batches


def deduplicate(keys: Sequence[Hashable | None]) -> tuple[list[int], list[int | None]]:
    """Rows to compute (the first of each distinct key) and each row's slot among them (None: no key)."""
    firsts: list[int] = []
    slot_of: dict[Hashable, int] = {}
    slots: list[int | None] = []
    for row, key in enumerate(keys):
        if key is None:
            slots.append(None)
            continue
        if key not in slot_of:
            slot_of[key] = len(firsts)
            firsts.append(row)
        slots.append(slot_of[key])
    return firsts, slots


def restore(values: Sequence[T], slots: Sequence[int | None], missing: Any = None) -> list[Any]:
    """Hand each row the value of its slot (rows without a slot get `missing`), in row order."""
    return [missing if slot is None else values[slot] for slot in slots]
