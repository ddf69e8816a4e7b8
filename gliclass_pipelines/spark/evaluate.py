"""Evaluate a Spark DataFrame of predictions in one distributed aggregation: no row reaches the driver.

Each row becomes a few (label, kind, n) entries (kind: tp, fp, fn, or a row counter), and one groupBy
sums them; the driver collects at most 3 x labels + 5 small rows. The rule is the one in
:mod:`gliclass_pipelines.quality.metrics`; ties for the top label go to the alphabetically last label.
"""

from __future__ import annotations

from typing import Any

from gliclass_pipelines._common.checks import DEFAULT_THRESHOLD
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.quality.evaluate import thresholds_of
from gliclass_pipelines.quality.metrics import COUNT_KEYS, Counts, Report
from gliclass_pipelines.taxonomy.taxonomy import Taxonomy


def evaluate_dataframe(
    df: Any,
    taxonomy: Taxonomy | Any,
    *,
    predictions_col: str = "labels",
    gold_col: str = "gold",
    threshold: float = DEFAULT_THRESHOLD,
    delimiter: str = ",",
) -> Report:
    """A Report for ``df``: predictions as ``array<struct<label,score>>`` or ``map<string,float>``, gold
    labels as ``array<string>`` or delimited text."""
    from pyspark.sql import functions as F

    taxonomy = Taxonomy.coerce(taxonomy)
    thresholds = thresholds_of(taxonomy, threshold)
    entries = _entries(df, taxonomy, thresholds, predictions_col, gold_col, delimiter)
    grouped = (
        df.select(F.inline(entries))
        .groupBy("label", "kind")
        .agg(F.sum("n").alias("n"))
        .where(F.col("n") > 0)
        .collect()
    )
    counts = Counts(taxonomy.labels)
    for row in grouped:
        if row["kind"] in COUNT_KEYS:
            counts.rows[row["kind"]] += int(row["n"])
        else:
            getattr(counts, row["kind"])[row["label"]] = int(row["n"])
    return Report.from_counts(counts, thresholds)


def _field_type(df: Any, name: str) -> Any:
    if name not in df.columns:
        raise ConfigError(f"column {name!r} is not in the DataFrame (columns: {', '.join(df.columns)})")
    return df.schema[name].dataType


def _predictions(df: Any, name: str) -> Any:
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, MapType

    kind = _field_type(df, name)
    if isinstance(kind, MapType):
        return F.transform(
            F.map_entries(F.col(name)), lambda e: F.struct(e["key"].alias("label"), e["value"].alias("score"))
        )
    if isinstance(kind, ArrayType):
        return F.col(name)
    raise ConfigError(
        f"predictions column {name!r} must be array<struct<label,score>> or map<string,float>, "
        f"got {kind.simpleString()}"
    )


def _gold(df: Any, name: str, delimiter: str) -> Any:
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, StringType

    kind = _field_type(df, name)
    if isinstance(kind, StringType):
        raw = F.split(F.col(name), _regex_literal(delimiter))
    elif isinstance(kind, ArrayType):
        raw = F.col(name)
    else:
        raise ConfigError(
            f"gold column {name!r} must be array<string> or delimited text, got {kind.simpleString()}"
        )
    cleaned = F.filter(
        F.transform(F.coalesce(raw, F.array().cast("array<string>")), F.trim), lambda x: x != ""
    )
    return F.array_distinct(cleaned)


def _regex_literal(text: str) -> str:
    import re

    return re.escape(text)


def _entries(df: Any, taxonomy: Taxonomy, thresholds: dict[str, float], pred_name: str, gold_name: str,
             delimiter: str) -> Any:  # fmt: skip
    from pyspark.sql import functions as F

    known = F.array(*[F.lit(label) for label in taxonomy.labels])
    limits = F.create_map(*[F.lit(x) for pair in thresholds.items() for x in pair])
    raw = _predictions(df, pred_name)
    preds = F.filter(F.coalesce(raw, F.array()), lambda p: F.array_contains(known, p["label"]))
    gold_all = _gold(df, gold_name, delimiter)
    gold = F.filter(gold_all, lambda g: F.array_contains(known, g))
    predicted = F.transform(
        F.filter(preds, lambda p: p["score"] >= F.element_at(limits, p["label"])), lambda p: p["label"]
    )
    top = F.array_max(F.transform(preds, lambda p: F.struct(p["score"].alias("s"), p["label"].alias("l"))))
    has_gold = F.size(gold) > 0
    row_counters = {
        "rows": F.lit(1),
        "rows_with_gold": has_gold.cast("long"),
        "top1_correct": (has_gold & F.coalesce(F.array_contains(gold, top["l"]), F.lit(False))).cast("long"),
        "null_predictions": raw.isNull().cast("long"),
        "unknown_gold": (F.size(gold_all) - F.size(gold)).cast("long"),
    }

    def entry(label: Any, kind: str, n: Any) -> Any:
        return F.struct(
            label.cast("string").alias("label"), F.lit(kind).alias("kind"), n.cast("long").alias("n")
        )

    def entries_of(labels: Any, kind: str) -> Any:
        return F.transform(labels, lambda x: entry(x, kind, F.lit(1)))

    per_label = [
        entries_of(F.array_intersect(predicted, gold), "tp"),
        entries_of(F.array_except(predicted, gold), "fp"),
        entries_of(F.array_except(gold, predicted), "fn"),
    ]
    counters = F.array(*[entry(F.lit(None), kind, n) for kind, n in row_counters.items()])
    return F.concat(counters, *per_label)
