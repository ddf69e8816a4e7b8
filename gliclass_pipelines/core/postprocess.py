"""Logits to predictions: combine each row's sequences, then scores, thresholds and order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gliclass_pipelines.core.label_plan import EMPTY_PLAN, EncodedSequence, LabelPlan


def empty_logits(sequences: Sequence[EncodedSequence], n_rows: int) -> list[np.ndarray]:
    """One array of -inf logits per row, as long as the row's label set."""
    plans: list[Any] = [EMPTY_PLAN] * n_rows
    for s in sequences:
        plans[s.row] = s.plan
    return [np.full(len(p.labels), -np.inf) for p in plans]


def combine(logits: list[np.ndarray], sequences: Sequence[EncodedSequence], batch_logits: np.ndarray) -> None:
    """Put a batch's logits in their rows: label groups side by side, a long text's windows by max."""
    for s, row_logits in zip(sequences, batch_logits):
        span = slice(s.group.offset, s.group.offset + len(s.group.labels))
        np.maximum(logits[s.row][span], row_logits[: len(s.group.labels)], out=logits[s.row][span])


def predictions(plan: LabelPlan, logits: np.ndarray, multi_label: bool, return_all: bool) -> list[dict]:
    """Labels with their scores, by descending score: those over their threshold, the top one, or all."""
    if not plan.labels:
        return []
    logits = logits.astype(np.float64)
    if multi_label:
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = np.ones(len(scores), dtype=bool) if return_all else scores >= plan.thresholds
    else:
        shifted = np.exp(logits - logits.max())
        scores = shifted / shifted.sum()
        keep = np.ones(len(scores), dtype=bool) if return_all else np.arange(len(scores)) == scores.argmax()
    order = np.argsort(-scores, kind="stable")
    return [{"label": plan.labels[i], "score": float(scores[i])} for i in order if keep[i]]
