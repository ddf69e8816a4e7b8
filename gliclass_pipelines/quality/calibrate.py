"""Per-label thresholds from a labelled sample: best F1 (or a target precision), a global fallback."""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gliclass_pipelines._common.checks import DEFAULT_THRESHOLD, check_positive_int, check_threshold
from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.taxonomy.taxonomy import Taxonomy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibration:
    """Fitted thresholds, which labels fell back to the global one, and the global threshold itself."""

    thresholds: dict[str, float]
    global_threshold: float
    fallback: tuple[str, ...]
    prior: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "thresholds": self.thresholds,
            "global_threshold": self.global_threshold,
            "fallback": list(self.fallback),
            "prior": self.prior if math.isfinite(self.prior) else "inf",
        }


def _cuts(scores: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each distinct score cut (descending): the threshold, tp, fp, and the next lower score."""
    order = np.argsort(-scores, kind="stable")
    s, g = scores[order], gold[order]
    tp, fp = np.cumsum(g), np.cumsum(~g)
    last = np.r_[s[1:] != s[:-1], True]  # the last row of each run of equal scores
    below = np.r_[s[1:], -np.inf][last]
    return s[last], tp[last], fp[last], below


def _midpoint(at: float, below: float) -> float:
    """A threshold between the cut score and the next lower one (the cut itself when nothing is below)."""
    return float(at if not np.isfinite(below) else (at + below) / 2)


def best_threshold(
    scores: np.ndarray, gold: np.ndarray, *, target_precision: float | None = None
) -> tuple[float, float] | None:
    """(threshold, F1 or precision) maximising F1, or the lowest threshold reaching ``target_precision``.

    None when no threshold works (no positives, or the target precision is never reached).
    """
    scores, gold = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(gold, dtype=bool).ravel()
    positives = int(gold.sum())
    if positives == 0:
        return None
    at, tp, fp, below = _cuts(scores, gold)
    precision = tp / (tp + fp)
    if target_precision is not None:
        ok = np.flatnonzero(precision >= target_precision)
        if not len(ok):
            return None
        i = ok[-1]
        return _midpoint(at[i], below[i]), float(precision[i])
    f1 = 2 * tp / (tp + fp + positives)
    i = int(np.argmax(f1))
    return _midpoint(at[i], below[i]), float(f1[i])


PRIORS = (0.0, 3.0, 10.0, 30.0, 100.0, math.inf)
FOLDS = 5


def calibrate(
    scores: np.ndarray,
    gold: np.ndarray,
    labels: Sequence[str],
    *,
    min_support: int = 5,
    target_precision: float | None = None,
    default: float = DEFAULT_THRESHOLD,
    prior: float | str = "auto",
) -> Calibration:
    """Per-label thresholds from scores (rows x labels) and gold (rows x labels booleans).

    A label with fewer than ``min_support`` gold rows, or whose target precision is out of reach, gets
    the global threshold: the one that maximises micro-F1 over all labels pooled (``default`` when
    there are no gold labels at all). Any other label's threshold is its own best one pulled toward the
    global one, as if ``prior`` more gold rows had voted for the global threshold:
    ``(n * own + prior * global) / (n + prior)`` for a label with ``n`` gold rows. A threshold fitted on
    a few rows overfits them; ``prior=0`` keeps each label's own best threshold, ``math.inf`` gives every
    label the global one, and ``"auto"`` picks from ``PRIORS`` the one with the best micro-F1 over
    ``FOLDS``-fold cross-validation on these rows. With ``target_precision`` nothing is pulled, so each
    label keeps the precision it was asked for.
    """
    scores, gold = np.asarray(scores, dtype=np.float64), np.asarray(gold, dtype=bool)
    if scores.shape != gold.shape or scores.ndim != 2 or scores.shape[1] != len(labels):
        raise ConfigError(
            f"scores {scores.shape} and gold {gold.shape} must both be rows x {len(labels)} labels"
        )
    check_positive_int(min_support, "min_support", optional=False)
    if prior != "auto" and (isinstance(prior, bool) or not isinstance(prior, int | float) or not prior >= 0):
        raise ConfigError(f"prior must be 'auto' or a number of rows >= 0, got {prior!r}")
    if target_precision is not None:
        check_threshold(target_precision, "target_precision")
        prior = 0.0
    elif prior == "auto":
        prior = _cross_validated_prior(scores, gold, min_support, default)
    fitted = _fit(scores, gold, labels, min_support, target_precision, default, float(prior))
    logger.info(
        "calibrated %d labels, %d on the global threshold %.4f, prior %g",
        len(labels), len(fitted.fallback), fitted.global_threshold, fitted.prior,
    )  # fmt: skip
    return fitted


def _fit(scores: np.ndarray, gold: np.ndarray, labels: Sequence[str], min_support: int,
         target_precision: float | None, default: float, prior: float) -> Calibration:  # fmt: skip
    pooled = best_threshold(scores, gold)
    global_threshold = round(pooled[0], 4) if pooled else check_threshold(default, "default")
    thresholds, fallback = {}, []
    for j, label in enumerate(labels):
        found, support = None, int(gold[:, j].sum())
        if support >= min_support:
            found = best_threshold(scores[:, j], gold[:, j], target_precision=target_precision)
        if found is None:
            fallback.append(label)
            thresholds[label] = global_threshold
        elif math.isinf(prior):
            thresholds[label] = global_threshold
        else:
            thresholds[label] = round((support * found[0] + prior * global_threshold) / (support + prior), 4)
    return Calibration(thresholds, global_threshold, tuple(fallback), prior)


def _cross_validated_prior(scores: np.ndarray, gold: np.ndarray, min_support: int, default: float) -> float:
    """The prior in PRIORS whose thresholds, fitted on the other folds, give the best pooled micro-F1 on
    each held-out fold (rows dealt to folds in turn); 10 when there are too few rows to fold."""
    if len(scores) < 4 * FOLDS:
        return 10.0
    folds = np.arange(len(scores)) % FOLDS
    labels = [str(j) for j in range(scores.shape[1])]
    best, best_f1 = 10.0, -1.0
    for prior in PRIORS:
        tp = predicted = 0
        for k in range(FOLDS):
            fit, held = folds != k, folds == k
            fitted = _fit(scores[fit], gold[fit], labels, min_support, None, default, prior)
            positive = scores[held] >= np.array([fitted.thresholds[j] for j in labels])
            tp += int((positive & gold[held]).sum())
            predicted += int(positive.sum())
        f1 = 2 * tp / max(predicted + int(gold.sum()), 1)
        if f1 > best_f1:
            best, best_f1 = prior, f1
    return best


def with_thresholds(taxonomy: Taxonomy, thresholds: dict[str, float]) -> Taxonomy:
    """The taxonomy with these per-label thresholds (replacing any it had)."""
    data = taxonomy.to_dict()
    data["thresholds"] = {label: float(thresholds[label]) for label in taxonomy.labels if label in thresholds}
    return Taxonomy.from_dict(data)


def check_taxonomy_target(path: str | os.PathLike[str]) -> str:
    """Where a taxonomy may be written: a new .yaml/.yml file, or an existing taxonomy YAML, which it updates.

    Anything else (a data file, a folder, a symlink, a device) is refused, naming it, before any work."""
    target = os.path.abspath(os.path.expanduser(os.fspath(path)))
    shown = shorten(target)
    if os.path.splitext(target)[1].lower() not in (".yaml", ".yml"):
        raise ConfigError(f"taxonomy output {shown!r} must be a .yaml or .yml file")
    if os.path.islink(target):
        raise ConfigError(f"taxonomy output {shown!r} is a symlink; nothing was touched. Name the file")
    if not os.path.isdir(os.path.dirname(target)):
        raise ConfigError(f"taxonomy output {shown!r}: its folder does not exist")
    if os.path.lexists(target):
        if not os.path.isfile(target):
            raise ConfigError(f"taxonomy output {shown!r} exists and is not a regular file; nothing touched")
        try:
            Taxonomy.from_file(target)
        except ConfigError as err:
            why = shorten(" ".join(str(err).split()), 200)
            raise ConfigError(
                f"taxonomy output {shown!r} exists and is not a taxonomy file, so it is not replaced "
                f"({why}). Give a new file, or a taxonomy file to update"
            ) from err
    return target


def write_taxonomy(taxonomy: Taxonomy, path: str | os.PathLike[str]) -> None:
    """Write the taxonomy as YAML (labels, thresholds, prompt, ...), atomically: the file appears whole.

    ``path`` must pass :func:`check_taxonomy_target`: a new file, or an existing taxonomy it updates."""
    import yaml

    target = check_taxonomy_target(path)
    text = yaml.safe_dump(taxonomy.to_dict(), sort_keys=False, allow_unicode=True)
    folder = os.path.dirname(target)
    fd, tmp = tempfile.mkstemp(prefix=".taxonomy-", suffix=".yaml.tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
