"""Scorer and pooling heads shared by every architecture's forward pass (torch functions only).

A label-mixing scorer (``hopfield``) sees only a row's own label slots, and text pooling only its real
tokens, so a row's scores never depend on its batch neighbours.
"""

from __future__ import annotations

from typing import Any

import torch

from gliclass_pipelines.errors import ConfigError


def score(
    scorer_type: str,
    scorer: Any,
    text: torch.Tensor,
    classes: torch.Tensor,
    slots: torch.Tensor,
    text_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The scorer's logits (batch, label slots); a label-mixing scorer sees only the `slots` marked 1."""
    mixing = LABEL_MIXING_SCORERS.get(scorer_type)
    if mixing is not None:
        return mixing(scorer, text, classes, slots.bool())
    return scorer(text, classes, text_mask=text_mask)


def hopfield_scores(
    scorer: Any, text: torch.Tensor, classes: torch.Tensor, slots: torch.Tensor
) -> torch.Tensor:
    """gliclass's HopfieldScorer with its own weights, its softmax over labels taken over `slots` only."""
    keys = scorer.k_proj(text.unsqueeze(1))  # (batch, 1, dim)
    values = scorer.v_proj(text.unsqueeze(1))
    outside = ~slots.unsqueeze(-1)
    for _ in range(scorer.num_iteration):
        attention = torch.bmm(scorer.q_proj(classes), keys.transpose(1, 2)) * scorer.beta
        attention = attention.masked_fill(outside, torch.finfo(attention.dtype).min).softmax(dim=1)
        classes = classes + attention * values
    return scorer.mlp(classes).squeeze(-1)


LABEL_MIXING_SCORERS = {"hopfield": hopfield_scores}


def calibrated(
    model: Any, logits: torch.Tensor, pooled: torch.Tensor, classes: torch.Tensor, class_mask: torch.Tensor
) -> torch.Tensor:
    """Logits after the model's calibrator head, when it has one."""
    calibrator = getattr(model, "calibrator", None)
    if calibrator is None:
        return logits
    beta, bias = calibrator(pooled, classes, logits, class_mask)
    return (beta * logits.float() + bias).to(logits.dtype)


def masked_pool(strategy: str, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pool token states over real tokens only: the answer a batch of one (no padding) gives. ``pass``
    keeps every token's state; the scorer that reads them (cross-attn) masks the padding itself."""
    if strategy == "pass":
        return states
    if strategy == "first":
        return states[:, 0]
    if strategy == "last":
        last = mask.long().sum(dim=1) - 1
        return states[torch.arange(states.shape[0], device=states.device), last]
    weights = mask.unsqueeze(-1).to(states.dtype)
    count = weights.sum(dim=1)
    if strategy == "max":
        return states.masked_fill(weights == 0, torch.finfo(states.dtype).min).amax(dim=1)
    if strategy == "abs_max":
        return (states.abs() * weights).amax(dim=1)
    if strategy == "sum":
        return (states * weights).sum(dim=1)
    if strategy == "avg":
        return (states * weights).sum(dim=1) / count
    if strategy == "abs_avg":
        return (states.abs() * weights).sum(dim=1) / count
    if strategy == "rms":
        return ((states.pow(2) * weights).sum(dim=1) / count).sqrt()
    raise ConfigError(f"pooling {strategy!r} is not supported")
