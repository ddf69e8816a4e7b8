"""Classify texts inside Spark: :func:`gliclass_udf` (a Column) and :func:`classify_dataframe`.

The driver only builds and validates a :class:`~gliclass_pipelines.core.config.ClassifyConfig` (no model,
no SparkContext, so it works under Spark Connect too). The UDF is an iterator-of-Series pandas UDF
whose closure holds that config and nothing else; on the executor each Python worker takes the model
from the per-process registry, so a reused worker loads it once per (model, device, dtype).

GPUs: when Spark assigns a task a GPU (``spark.task.resource.gpu.amount``), the task's first address
``N`` becomes the engine device ``cuda:N``, unless ``device`` names one explicitly. Threads: the model
uses ``num_threads``, else the task's CPUs (``spark.task.cpus``), so parallel tasks do not
oversubscribe an executor's cores.

Batches: Spark hands the UDF Arrow batches of ``spark.sql.execution.arrow.maxRecordsPerBatch`` rows
(10,000 by default). Each batch is sorted by length and cut into forward passes of at most
``batch_tokens`` padded tokens, so the Arrow batch should hold many forward passes' worth of rows.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pandas as pd
from pyspark import AccumulatorParam
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.core.config import ClassifyConfig
from gliclass_pipelines.core.outcomes import RunStats
from gliclass_pipelines.core.results import SPARK_DDL
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.spark.tasks import classify_batches

logger = logging.getLogger(__name__)

__all__ = [
    "GLiClassUDF",
    "classify_dataframe",
    "gliclass_udf",
    "gliclass_udf_from_config",
    "register_sql",
    "stats_accumulator",
]

_SQL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def gliclass_udf(
    text_col: str | Column,
    *,
    model: str,
    labels: Any = None,
    labels_col: str | Column | None = None,
    stats: Any = None,
    prompt_col: str | Column | None = None,
    threshold_col: str | Column | None = None,
    **settings: Any,
) -> Column:
    """A Column classifying `text_col` against `labels` (shared) or per-row `labels_col`: array<string>,
    or a map of groups to labels (``map<string,array<string>>``, nesting allowed), one hierarchy per row.
    `prompt_col` (string) and `threshold_col` (a number) give each row its own task prompt and threshold, as
    the reference's per-text ``prompt`` and ``threshold``; a null cell takes the job's, a bad one fails
    its row.

    ``settings`` are :class:`~gliclass_pipelines.core.config.ClassifyConfig`'s (threshold, multi_label,
    output, device, dtype, long_text, batch_tokens, max_length, num_threads) and Classifier.run options.
    output="labels" gives ``array<struct<label,score>>`` (the labels over threshold, best first),
    "top" ``struct<label,score>``, "scores" ``map<string,float>`` and "hierarchical"
    ``map<string,map<string,float>>`` (group path -> label -> score). A null text gives null.
    Raises ConfigError at once, on the driver, for a bad model string, taxonomy or setting.
    ``stats``: an accumulator from :func:`stats_accumulator`.
    """
    config = _config(model, labels, labels_col, settings)
    udf = GLiClassUDF(config, stats=stats)
    return udf(text_col, labels_col, prompt_col=prompt_col, threshold_col=threshold_col)


def gliclass_udf_from_config(
    config: ClassifyConfig,
    text_col: str | Column,
    labels_col: str | Column | None = None,
    *,
    stats: Any = None,
    prompt_col: str | Column | None = None,
    threshold_col: str | Column | None = None,
) -> Column:
    """The Column for an existing ClassifyConfig (per-row labels come from `labels_col`, per-row prompts
    and thresholds from `prompt_col` and `threshold_col`).

    `stats`: an accumulator from :func:`stats_accumulator`; each task adds its RunStats to it.
    """
    udf = GLiClassUDF(config, stats=stats)
    return udf(text_col, labels_col, prompt_col=prompt_col, threshold_col=threshold_col)


class GLiClassUDF:
    """The classifier as a Spark UDF object: call it on columns, or register it for SQL.

    ``GLiClassUDF(config)(text_col[, labels_col])`` is the Column :func:`gliclass_udf` gives;
    ``.function`` is the pandas UDF itself, for ``spark.udf.register`` (its "top" output is an array of
    the top struct, see :func:`register_sql`). The UDF is marked non-deterministic, so Spark's optimizer
    neither pushes a filter on the result below it nor copies it into a second expression: each row is
    classified once when a query filters on the result, explodes it or selects several of its fields.
    """

    def __init__(self, config: ClassifyConfig, *, stats: Any = None) -> None:
        self.config, self.stats = config, stats
        self.function = _pandas_udf(config, stats)

    @classmethod
    def from_settings(
        cls, *, model: str, labels: Any = None, per_row_labels: bool = False, **settings: Any
    ) -> GLiClassUDF:
        """A UDF object for the keyword settings of :func:`gliclass_udf`."""
        stats = settings.pop("stats", None)
        config = ClassifyConfig.from_settings(model, labels, per_row_labels=per_row_labels, **settings)
        return cls(config, stats=stats)

    def fingerprint(self) -> str:
        """The job's provenance fingerprint (ClassifyConfig.fingerprint), for a user's job to write."""
        return self.config.fingerprint()

    def __call__(
        self,
        text_col: str | Column,
        labels_col: str | Column | None = None,
        *,
        prompt_col: str | Column | None = None,
        threshold_col: str | Column | None = None,
    ) -> Column:
        if self.config.per_row_labels != (labels_col is not None):
            raise ConfigError(
                "a per-row labels config needs labels_col, and a shared-labels config must not get one"
            )
        given = {"labels": labels_col, "prompt": prompt_col, "threshold": threshold_col}
        cells = tuple(name for name, col in given.items() if col is not None)
        columns = [_column(text_col, "text_col")] + [_column(given[n], f"{n}_col") for n in cells]
        function = self.function if cells == ("labels",) * self.config.per_row_labels else None
        result = (function or _pandas_udf(self.config, self.stats, cells))(*columns)
        if self.config.output == "top":
            result = F.get(result, 0)  # the UDF returns [top] or null: a null struct needs an array around it
        return result.alias("gliclass")

    def register(self, spark: Any, name: str) -> None:
        """Make ``name(text)`` (``name(text, labels)`` with per-row labels) callable from Spark SQL, with
        the same output as the Column. Temporary: for this session."""
        if not _SQL_NAME.fullmatch(name or ""):
            raise ConfigError(f"a SQL function name is letters, digits and _, got {shorten(repr(name))}")
        if self.config.output != "top":
            spark.udf.register(name, self.function)
            return
        batch_name = f"{name}__batch"
        spark.udf.register(batch_name, self.function)
        params, args = ("text STRING", "text")
        if self.config.per_row_labels:
            params, args = (f"{params}, labels ARRAY<STRING>", f"{args}, labels")
        spark.sql(
            f"CREATE OR REPLACE TEMPORARY FUNCTION {name}({params}) "
            f"RETURNS {SPARK_DDL['top']} RETURN get({batch_name}({args}), 0)"
        )


def register_sql(spark: Any, name: str, config: ClassifyConfig | None = None, **settings: Any) -> GLiClassUDF:
    """Register the classifier as the SQL function `name`, for `config` or the keyword settings of
    :func:`gliclass_udf` (``model=``, ``labels=``...; ``per_row_labels=True`` for ``name(text, labels)``).

    ``SELECT id, name(text) AS labels FROM docs`` then gives what the Column gives."""
    if config is not None and settings:
        raise ConfigError(f"give a config or settings, not both (got {', '.join(sorted(settings))})")
    udf = GLiClassUDF(config) if config is not None else GLiClassUDF.from_settings(**settings)
    udf.register(spark, name)
    return udf


def classify_dataframe(
    df: DataFrame,
    text_col: str,
    config: ClassifyConfig | None = None,
    *,
    output_col: str = "gliclass",
    labels_col: str | None = None,
    stats: Any = None,
    prompt_col: str | None = None,
    threshold_col: str | None = None,
    **settings: Any,
) -> DataFrame:
    """`df` with a column `output_col` of results, for `config` or the keyword settings of
    :func:`gliclass_udf` (``model=``, ``labels=``...), not both."""
    _check_column_type(df, text_col, StringType(), "text_col")
    for col, types, what in (
        (labels_col, LABELS_COLUMN_TYPES, "labels_col"),
        (prompt_col, StringType(), "prompt_col"),
        (threshold_col, THRESHOLD_COLUMN_TYPES, "threshold_col"),
    ):
        if col is not None:
            _check_column_type(df, col, types, what)
    if config is None:
        config = _config(settings.pop("model", None), settings.pop("labels", None), labels_col, settings)
    elif settings:
        raise ConfigError(f"give a config or settings, not both (got {', '.join(sorted(settings))})")
    column = gliclass_udf_from_config(
        config, text_col, labels_col, stats=stats, prompt_col=prompt_col, threshold_col=threshold_col
    )
    return df.withColumn(output_col, column)


def stats_accumulator(spark: Any) -> Any:
    """A RunStats accumulator for ``stats=``: after an action, ``.value`` is the job's RunStats.

    Spark counts a task again when it reruns it (a retry, a lost executor, a plan that evaluates the
    UDF twice), so treat these as what was computed, and the written rows as what was produced.
    Needs a classic SparkSession (Spark Connect has no accumulators).
    """
    try:
        context = spark.sparkContext
    except Exception as exc:  # Spark Connect
        raise ConfigError(f"run statistics need a classic SparkSession, not {type(spark).__name__}") from exc
    return context.accumulator(RunStats(), _RunStatsParam())


class _RunStatsParam(AccumulatorParam):
    def zero(self, value: RunStats) -> RunStats:
        return RunStats()

    def addInPlace(self, first: RunStats, second: RunStats) -> RunStats:  # noqa: N802 (Spark's name)
        return first.add(second)


def _config(model: Any, labels: Any, labels_col: Any, settings: dict[str, Any]) -> ClassifyConfig:
    if labels_col is not None and labels is not None:
        raise ConfigError("give either labels (one taxonomy for every row) or labels_col (per row), not both")
    return ClassifyConfig.from_settings(model, labels, per_row_labels=labels_col is not None, **settings)


def _column(col: Any, name: str) -> Column:
    if isinstance(col, str):
        return F.col(col)
    if isinstance(col, Column):
        return col
    raise ConfigError(f"{name} must be a column name or a Column, got {type(col).__name__}")


def _check_column_type(df: DataFrame, name: Any, expected: Any, what: str) -> None:
    """`expected`: a type, or a tuple of the types' prefixes (simpleString) that are accepted."""
    if not isinstance(name, str):
        return
    if name not in df.columns:
        raise ConfigError(f"{what} {name!r} is not a column of the DataFrame; it has {', '.join(df.columns)}")
    actual = df.schema[name].dataType.simpleString()
    accepted = expected if isinstance(expected, tuple) else (expected.simpleString(),)
    if not any(actual == kind or (kind.endswith(",") and actual.startswith(kind)) for kind in accepted):
        shown = [kind + "...>" * kind.count("<") if kind.endswith(",") else kind for kind in accepted]
        raise ConfigError(f"{what} {name!r} must be {' or '.join(shown)}, got {actual}")


# per-row labels: a list of labels, or the row's hierarchy (a map of groups: gliclass's dict per text)
LABELS_COLUMN_TYPES = ("array<string>", "map<string,", "array<map<string,")
THRESHOLD_COLUMN_TYPES = ("double", "float", "tinyint", "smallint", "int", "bigint")  # a decimal: cast it


def _pandas_udf(config: ClassifyConfig, stats: Any = None, cells: tuple[str, ...] | None = None) -> Any:
    """The pandas UDF over the text column and the `cells` columns (by default the labels column of a
    per-row labels config), of "labels", "prompt" and "threshold". Its closure holds only `config`,
    `stats` (None or an accumulator) and `cells`."""
    ddl = SPARK_DDL["labels"] if config.output == "top" else SPARK_DDL[config.output]
    cells = ("labels",) * config.per_row_labels if cells is None else cells

    def gliclass(batches):  # type: ignore[no-untyped-def]  (Spark reads the hints set below)
        columns = ((batch, ()) if not cells else (batch[0], batch[1:]) for batch in batches)
        yield from classify_batches(
            config, ((texts, dict(zip(cells, rest))) for texts, rest in columns), stats
        )

    batch = pd.Series if not cells else tuple[(pd.Series,) * (1 + len(cells))]
    gliclass.__annotations__ = {"batches": Iterator[batch], "return": Iterator[pd.Series]}
    return F.pandas_udf(gliclass, ddl).asNondeterministic()
