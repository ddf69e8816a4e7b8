"""Evaluate in Apache Beam: a CombineFn over (prediction, gold) elements whose output is a Report."""

from __future__ import annotations

from typing import Any

import apache_beam as beam

from gliclass_pipelines._common.checks import DEFAULT_THRESHOLD
from gliclass_pipelines.quality.evaluate import thresholds_of
from gliclass_pipelines.quality.metrics import Counts, Report, parse_gold, scores_of
from gliclass_pipelines.taxonomy.taxonomy import Taxonomy


class EvaluateFn(beam.CombineFn):
    """Combine ``(prediction, gold)`` pairs into a Report; the accumulators are small per-label counts.

    A prediction is the engine's [{label, score}] list, a {label: score} map, or None; gold is a list of
    labels or delimited text. Use with ``beam.CombineGlobally(EvaluateFn(taxonomy))``.
    """

    def __init__(
        self, taxonomy: Taxonomy | Any, *, threshold: float = DEFAULT_THRESHOLD, delimiter: str = ","
    ) -> None:
        self.taxonomy = Taxonomy.coerce(taxonomy)
        self.thresholds = thresholds_of(self.taxonomy, threshold)
        self.delimiter = delimiter

    def create_accumulator(self) -> Counts:
        return Counts(self.taxonomy.labels)

    def add_input(self, accumulator: Counts, element: tuple[Any, Any]) -> Counts:
        prediction, gold = element
        accumulator.add_row(scores_of(prediction), parse_gold(gold, self.delimiter), self.thresholds)
        return accumulator

    def merge_accumulators(self, accumulators: Any) -> Counts:
        merged = self.create_accumulator()
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator: Counts) -> Report:
        return Report.from_counts(accumulator, self.thresholds)
