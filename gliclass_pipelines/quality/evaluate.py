"""Evaluate predictions against gold labels in Python, and plot precision/recall against threshold."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gliclass_pipelines._common.checks import DEFAULT_THRESHOLD
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.quality.metrics import Counts, Report, parse_gold, scores_of
from gliclass_pipelines.taxonomy.taxonomy import Taxonomy

logger = logging.getLogger(__name__)


def thresholds_of(taxonomy: Taxonomy, default: float = DEFAULT_THRESHOLD) -> dict[str, float]:
    """Each label's threshold: the taxonomy's override, else ``default``."""
    return dict(zip(taxonomy.labels, taxonomy.thresholds_for(default)))


def predict_scores(classifier: Any, texts: Sequence[Any], taxonomy: Taxonomy, **options: Any) -> list[Any]:
    """Every label's score for every text (None for a null text), from a loaded Classifier."""
    return classifier.classify(list(texts), taxonomy, threshold=0.0, return_all=True, **options)


def evaluate(
    classifier_or_scores: Any,
    texts: Sequence[Any] | None,
    gold: Sequence[Any],
    taxonomy: Taxonomy | Sequence[str] | Mapping[str, Any],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    delimiter: str = ",",
    **options: Any,
) -> Report:
    """A Report of predictions against gold labels at the taxonomy's thresholds (``threshold`` elsewhere).

    ``classifier_or_scores`` is a Classifier (it classifies ``texts``, all labels scored) or the
    predictions themselves: one entry per row, each a [{label, score}] list, a {label: score} map or
    None. Predictions already cut at some threshold can only lose labels here, never regain them.
    """
    taxonomy = Taxonomy.coerce(taxonomy)
    predictions = _predictions(classifier_or_scores, texts, taxonomy, options)
    if len(predictions) != len(gold):
        raise ConfigError(f"{len(predictions)} predictions but {len(gold)} gold rows; give one per row")
    thresholds = thresholds_of(taxonomy, threshold)
    counts = Counts(taxonomy.labels)
    for prediction, row_gold in zip(predictions, gold):
        counts.add_row(scores_of(prediction), parse_gold(row_gold, delimiter), thresholds)
    if counts.rows["unknown_gold"]:
        logger.warning(
            "%d gold labels are not in the taxonomy and were not scored", counts.rows["unknown_gold"]
        )
    return Report.from_counts(counts, thresholds)


def _predictions(source: Any, texts: Sequence[Any] | None, taxonomy: Taxonomy, options: dict) -> list[Any]:
    if hasattr(source, "classify"):
        if texts is None:
            raise ConfigError("evaluating a classifier needs the texts")
        return predict_scores(source, texts, taxonomy, **options)
    if isinstance(source, str | bytes) or not isinstance(source, Sequence):
        raise ConfigError("predictions must be a Classifier or a list with one prediction per row")
    return list(source)


def score_matrix(predictions: Sequence[Any], labels: Sequence[str]) -> np.ndarray:
    """Rows x labels scores; a label missing from a row's prediction (or a null row) scores 0."""
    index = {label: j for j, label in enumerate(labels)}
    out = np.zeros((len(predictions), len(labels)), dtype=np.float64)
    for i, prediction in enumerate(predictions):
        for label, score in (scores_of(prediction) or {}).items():
            if label in index:
                out[i, index[label]] = score
    return out


def gold_matrix(gold: Sequence[Any], labels: Sequence[str], delimiter: str = ",") -> np.ndarray:
    """Rows x labels booleans: whether each label is among the row's gold labels."""
    index = {label: j for j, label in enumerate(labels)}
    out = np.zeros((len(gold), len(labels)), dtype=bool)
    for i, row in enumerate(gold):
        for label in parse_gold(row, delimiter):
            if label in index:
                out[i, index[label]] = True
    return out


def plot_threshold_curves(
    scores: np.ndarray,
    gold: np.ndarray,
    labels: Sequence[str],
    path: str | os.PathLike[str],
    *,
    max_labels: int = 36,
) -> list[str]:
    """A PNG grid: precision and recall against threshold, one panel per label (the best-supported first).

    Returns the labels drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    support = gold.sum(axis=0)
    order = [j for j in np.argsort(-support, kind="stable") if support[j] > 0][:max_labels]
    grid = np.linspace(0.0, 1.0, 101)
    cols = min(6, max(1, len(order)))
    rows = max(1, -(-len(order) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for ax, j in zip(axes.flat, order):
        predicted = scores[:, j][None, :] >= grid[:, None]
        tp = (predicted & gold[:, j][None, :]).sum(axis=1)
        precision = np.divide(
            tp, predicted.sum(axis=1), out=np.full(len(grid), np.nan), where=predicted.any(axis=1)
        )
        ax.set_visible(True)
        ax.plot(grid, precision, label="precision")
        ax.plot(grid, tp / support[j], label="recall")
        ax.set_title(f"{labels[j][:28]} (n={int(support[j])})", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=6)
    if order:
        axes.flat[0].legend(fontsize=6)
    fig.supxlabel("threshold")
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=80)
    plt.close(fig)
    return [labels[j] for j in order]
