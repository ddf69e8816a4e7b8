"""Counting one row's predictions against its gold labels, and the report the counts add up to.

One rule, used by every engine: a label is predicted when its score reaches its threshold; per label,
a predicted gold label is a true positive, a predicted other label a false positive, an unpredicted
gold label a false negative. Top-1 is right when the best-scoring label is one of the gold labels
(rows with gold labels only). A row without a prediction (a null text) predicts nothing and is counted.
Gold labels outside the taxonomy are not scored; they are counted, never silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gliclass_pipelines._common.checks import split_labels
from gliclass_pipelines.errors import ConfigError

COUNT_KEYS = ("rows", "rows_with_gold", "top1_correct", "null_predictions", "unknown_gold")


def parse_gold(value: Any, delimiter: str = ",") -> tuple[str, ...]:
    """Gold labels of one row: a list/tuple/array of str, or delimited text; None means no labels."""
    if value is None or (isinstance(value, float) and value != value):
        return ()
    if isinstance(value, str):
        parts = split_labels(value, delimiter)
    elif isinstance(value, Iterable) and not isinstance(value, Mapping | bytes):
        parts = list(value)
    else:
        raise ConfigError(f"gold labels must be a list of str or delimited text, got {type(value).__name__}")
    labels = []
    for part in parts:
        if not isinstance(part, str):
            raise ConfigError(f"a gold label must be a str, got {type(part).__name__}")
        if part.strip() and part.strip() not in labels:
            labels.append(part.strip())
    return tuple(labels)


def scores_of(prediction: Any) -> dict[str, float] | None:
    """A prediction as {label: score}: from the engine's [{label, score}] list or a score map."""
    if prediction is None:
        return None
    if isinstance(prediction, Mapping):
        return {str(k): float(v) for k, v in prediction.items()}
    return {item["label"]: float(item["score"]) for item in prediction}


@dataclass
class Counts:
    """Additive counts: per-label true/false positives and false negatives, and row counters."""

    labels: tuple[str, ...]
    tp: dict[str, int] = field(default_factory=dict)
    fp: dict[str, int] = field(default_factory=dict)
    fn: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_KEYS, 0))

    def add_row(
        self, scores: Mapping[str, float] | None, gold: Sequence[str], thresholds: Mapping[str, float]
    ) -> None:
        known = set(self.labels)
        gold_set = {g for g in gold if g in known}
        self.rows["rows"] += 1
        self.rows["unknown_gold"] += len(set(gold) - known)
        if scores is None:
            self.rows["null_predictions"] += 1
            scores = {}
        predicted = {label for label, s in scores.items() if label in known and s >= thresholds[label]}
        for label in predicted & gold_set:
            self.tp[label] = self.tp.get(label, 0) + 1
        for label in predicted - gold_set:
            self.fp[label] = self.fp.get(label, 0) + 1
        for label in gold_set - predicted:
            self.fn[label] = self.fn.get(label, 0) + 1
        if gold_set:
            self.rows["rows_with_gold"] += 1
            ranked = [label for label in scores if label in known]
            if ranked and max(ranked, key=lambda label: scores[label]) in gold_set:
                self.rows["top1_correct"] += 1

    def merge(self, other: Counts) -> Counts:
        for mine, theirs in (
            (self.tp, other.tp),
            (self.fp, other.fp),
            (self.fn, other.fn),
            (self.rows, other.rows),
        ):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value
        return self


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _f1(p: float, r: float) -> float:
    return _ratio(2 * p * r, p + r)


@dataclass(frozen=True)
class LabelMetrics:
    label: str
    threshold: float
    tp: int
    fp: int
    fn: int

    @property
    def support(self) -> int:
        return self.tp + self.fn

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return _f1(self.precision, self.recall)

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "threshold": self.threshold,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "support": self.support,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }


@dataclass(frozen=True)
class Report:
    """Per-label precision/recall/F1/support, micro and macro F1, top-1 accuracy, and row counters.

    Macro F1 averages the labels that occur in the gold labels or the predictions (a label neither
    present nor predicted has no defined F1).
    """

    per_label: tuple[LabelMetrics, ...]
    rows: dict[str, int]

    @classmethod
    def from_counts(cls, counts: Counts, thresholds: Mapping[str, float]) -> Report:
        per_label = tuple(
            LabelMetrics(
                label,
                thresholds[label],
                counts.tp.get(label, 0),
                counts.fp.get(label, 0),
                counts.fn.get(label, 0),
            )
            for label in counts.labels
        )
        return cls(per_label, dict(counts.rows))

    @property
    def micro_precision(self) -> float:
        tp = sum(m.tp for m in self.per_label)
        return _ratio(tp, tp + sum(m.fp for m in self.per_label))

    @property
    def micro_recall(self) -> float:
        tp = sum(m.tp for m in self.per_label)
        return _ratio(tp, tp + sum(m.fn for m in self.per_label))

    @property
    def micro_f1(self) -> float:
        return _f1(self.micro_precision, self.micro_recall)

    @property
    def macro_f1(self) -> float:
        seen = [m.f1 for m in self.per_label if m.tp + m.fp + m.fn]
        return _ratio(sum(seen), len(seen))

    @property
    def top1_accuracy(self) -> float:
        return _ratio(self.rows["top1_correct"], self.rows["rows_with_gold"])

    def summary(self) -> dict[str, float]:
        return {
            "micro_precision": self.micro_precision,
            "micro_recall": self.micro_recall,
            "micro_f1": self.micro_f1,
            "macro_f1": self.macro_f1,
            "top1_accuracy": self.top1_accuracy,
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.summary(), **self.rows, "per_label": [m.as_dict() for m in self.per_label]}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def to_markdown(self) -> str:
        s = self.summary()
        lines = [
            f"rows: {self.rows['rows']} (with gold: {self.rows['rows_with_gold']}, "
            f"null predictions: {self.rows['null_predictions']}, gold labels outside the taxonomy: "
            f"{self.rows['unknown_gold']})",
            "",
            "| metric | value |",
            "|---|---|",
            *(f"| {name} | {value:.4f} |" for name, value in s.items()),
            "",
            "| label | threshold | precision | recall | F1 | support |",
            "|---|---|---|---|---|---|",
        ]
        for m in self.per_label:
            name = m.label.replace("|", "\\|")
            values = f"{m.threshold:.3f} | {m.precision:.3f} | {m.recall:.3f} | {m.f1:.3f}"
            lines.append(f"| {name} | {values} | {m.support} |")
        return "\n".join(lines) + "\n"
