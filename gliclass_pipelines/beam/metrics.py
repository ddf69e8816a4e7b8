"""The project's Beam counters (namespace ``gliclass``), named after RunStats fields; read back here."""

from __future__ import annotations

import functools
import math
from typing import Any

from apache_beam.metrics import Metrics

from gliclass_pipelines.core.outcomes import RunStats

NAMESPACE = "gliclass"
DEAD_LETTERS = "dead_letters"
REASON_PREFIX = "reason_"  # counters of null and failed rows, by their outcome's code
LOAD_MS = "model_load_ms"  # RunStats.model_load_seconds, in whole milliseconds: Beam counters are integers


@functools.cache
def _metrics() -> dict[str, Any]:
    found = {name: Metrics.counter(NAMESPACE, name) for name in (*RunStats.COUNTERS, DEAD_LETTERS, LOAD_MS)}
    found["batch_size"] = Metrics.distribution(NAMESPACE, "batch_size")
    found["batch_tokens"] = Metrics.distribution(NAMESPACE, "batch_tokens")
    return found


def count_stats(stats: RunStats) -> None:
    """Add a batch's RunStats to the pipeline's counters (namespace ``gliclass``, named after its fields)."""
    metrics = _metrics()
    for name in RunStats.COUNTERS:
        if stats[name]:
            metrics[name].inc(stats[name])
    if stats.model_loads:
        metrics[LOAD_MS].inc(load_ms(stats.model_load_seconds))
    for code, n in stats.reasons.items():
        Metrics.counter(NAMESPACE, REASON_PREFIX + code).inc(n)


def load_ms(seconds: float) -> int:
    """Load seconds as a counter's whole milliseconds (at least 1, so a load never reads as no time)."""
    return max(1, math.ceil(seconds * 1000))


def count_dead_letters(n: int = 1) -> None:
    _metrics()[DEAD_LETTERS].inc(n)


def run_stats(result: Any) -> RunStats:
    """The RunStats a finished pipeline counted, read back from its ``gliclass`` counters."""
    totals, reasons = _counters(result)
    counters = {k: v for k, v in totals.items() if k in RunStats.COUNTERS}
    seconds = totals.get(LOAD_MS, 0) / 1000
    return RunStats.from_dict({**counters, "model_load_seconds": seconds, "reasons": reasons})


def dead_letter_count(result: Any) -> int:
    """How many elements a finished pipeline's ClassifyText sent to its dead letters."""
    return _counters(result)[0].get(DEAD_LETTERS, 0)


def _counters(result: Any) -> tuple[dict[str, int], dict[str, int]]:
    from apache_beam.metrics.metric import MetricsFilter

    totals: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        name = counter.key.metric.name
        value = counter.committed if counter.committed is not None else counter.attempted
        if name.startswith(REASON_PREFIX):
            reasons[name[len(REASON_PREFIX) :]] = reasons.get(name[len(REASON_PREFIX) :], 0) + value
        else:
            totals[name] = totals.get(name, 0) + value
    return totals, reasons
