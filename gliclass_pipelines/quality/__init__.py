"""The quality loop: evaluate predictions against gold labels, calibrate per-label thresholds, fine-tune.

- :func:`evaluate` (Python), :func:`gliclass_pipelines.spark.evaluate.evaluate_dataframe` (Spark, one
  distributed aggregation), :class:`gliclass_pipelines.beam.evaluate.EvaluateFn` (a Beam CombineFn);
- :func:`calibrate` and :func:`write_taxonomy` (thresholds into the taxonomy YAML every engine reads);
- :func:`gliclass_pipelines.quality.finetune.fine_tune` and ``bootstrap`` (torch; imported on use).

Importing this package loads numpy only.
"""

from __future__ import annotations

from gliclass_pipelines.quality.calibrate import Calibration, calibrate, with_thresholds, write_taxonomy
from gliclass_pipelines.quality.evaluate import evaluate, gold_matrix, plot_threshold_curves, score_matrix
from gliclass_pipelines.quality.metrics import Counts, LabelMetrics, Report, parse_gold

__all__ = [
    "Calibration",
    "Counts",
    "LabelMetrics",
    "Report",
    "calibrate",
    "evaluate",
    "gold_matrix",
    "parse_gold",
    "plot_threshold_curves",
    "score_matrix",
    "with_thresholds",
    "write_taxonomy",
]
