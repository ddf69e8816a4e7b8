"""Classify a table of texts with a GLiClass model and write Parquet: a spark-submit job.

    spark-submit --master local[4] spark/classify_job.py \\
        --input data/docs.jsonl --input-format json --text-col text --id-col id \\
        --taxonomy taxonomy.yaml --model knowledgator/gliclass-edge-v3.0 --output out/labels

The output holds the id column and one result column (``--output-col``, default ``gliclass``) whose type
depends on ``--output-kind``: labels (array<struct<label,score>>), top (struct) or scores (map).
Everything is checked before Spark starts, so a bad taxonomy or model string fails in seconds.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

FORMATS = ("json", "parquet", "csv", "orc", "text")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--input", required=True, help="input path (a file, directory or glob; any Hadoop FS)"
    )
    parser.add_argument("--input-format", default="parquet", choices=FORMATS)
    parser.add_argument("--text-col", default="text", help="column holding the texts")
    parser.add_argument("--id-col", default="id", help="column copied to the output to join results back")
    parser.add_argument("--taxonomy", required=True, help="labels file: YAML, JSON or one label per line")
    parser.add_argument("--model", required=True, help="Hub id[@revision], local directory or URI")
    parser.add_argument("--output", required=True, help="output directory (Parquet)")
    parser.add_argument("--output-col", default="gliclass")
    parser.add_argument("--prompt-col", default=None, help="a column of per-row task prompts, if any")
    parser.add_argument("--threshold-col", default=None, help="a column of per-row thresholds, if any")
    parser.add_argument("--output-kind", default="labels", choices=("labels", "top", "scores"))
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--single-label", action="store_true", help="softmax over the labels")
    parser.add_argument("--device", default="auto", help="auto uses the task's GPU when Spark assigned one")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--long-text", default="truncate", choices=("truncate", "chunk"))
    parser.add_argument("--batch-tokens", type=int, default=None, help="padded tokens per forward pass")
    parser.add_argument("--partitions", type=int, default=None, help="repartition the input first")
    parser.add_argument("--mode", default="errorifexists", choices=("errorifexists", "overwrite"))
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> Any:
    """The validated ClassifyConfig; raises ConfigError before any Spark work."""
    from gliclass_pipelines import Taxonomy
    from gliclass_pipelines.core.config import ClassifyConfig

    return ClassifyConfig(
        model=args.model,
        labels=Taxonomy.from_file(args.taxonomy),
        threshold=args.threshold,
        multi_label=not args.single_label,
        output=args.output_kind,
        device=args.device,
        dtype=args.dtype,
        long_text=args.long_text,
        batch_tokens=args.batch_tokens,
    )


def read_input(spark: Any, args: argparse.Namespace) -> Any:
    from pyspark.sql.functions import monotonically_increasing_id

    reader = spark.read
    if args.input_format == "csv":
        reader = reader.option("header", "true").option("multiLine", "true").option("escape", '"')
    df = reader.format(args.input_format).load(args.input)
    if args.input_format == "text":  # one text per line, numbered
        df = df.withColumnRenamed("value", args.text_col)
        df = df.withColumn(args.id_col, monotonically_increasing_id())
    missing = [c for c in (args.text_col, args.id_col) if c not in df.columns]
    if missing:
        raise SystemExit(f"input has no column(s) {', '.join(missing)}; it has {', '.join(df.columns)}")
    return df.repartition(args.partitions) if args.partitions else df


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from gliclass_pipelines import ConfigError, ModelLoadError
    from gliclass_pipelines.model.sources import ModelSource

    try:
        config = build(args)
        ModelSource.parse(config.model).fetch()  # here, once: not in every task attempt on the cluster
    except (ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from gliclass_pipelines.spark import gliclass_udf_from_config

    spark = SparkSession.builder.appName("gliclass-classify").getOrCreate()
    try:
        df = read_input(spark, args)
        column = gliclass_udf_from_config(
            config, args.text_col, prompt_col=args.prompt_col, threshold_col=args.threshold_col
        )
        result = df.select(F.col(args.id_col), column.alias(args.output_col))
        result.write.mode(args.mode).parquet(args.output)
        written = spark.read.parquet(args.output)
        rows = written.count()
        nulls = written.where(F.col(args.output_col).isNull()).count()
        print(f"wrote {rows} rows to {args.output} ({nulls} null results: null texts or failed rows)")
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
