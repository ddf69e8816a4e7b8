"""``gliclass-pipelines evaluate | calibrate | fine-tune``: the quality loop on files.

``add_commands(subparsers)`` adds the three subcommands to the CLI's parser; each sets ``func``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.checks import DEFAULT_THRESHOLD, split_labels
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.io.ownership import check_claimable, claim_folder
from gliclass_pipelines.taxonomy.taxonomy import Taxonomy

logger = logging.getLogger(__name__)
REPORT_FILES = ("report.json", "report.md", "thresholds.png")


def prior_value(text: str) -> float | str:
    """--prior: 'auto', or a number of rows >= 0 ('inf' included)."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number of rows, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of rows >= 0, got {text!r}")
    return value


def add_commands(commands: Any) -> None:
    """Add ``evaluate``, ``calibrate`` and ``fine-tune`` to an argparse subparsers object."""
    p = commands.add_parser("evaluate", help="score a labelled file: per-label P/R/F1, micro/macro F1, top-1")
    _add_data(p)
    p.add_argument(
        "--out", required=True, type=Path, help="folder for report.json, report.md, thresholds.png"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="threshold of labels the taxonomy leaves unset",
    )
    p.set_defaults(func=evaluate_command)

    p = commands.add_parser(
        "calibrate", help="fit per-label thresholds on a labelled file into a taxonomy YAML"
    )
    _add_data(p)
    p.add_argument(
        "--out", required=True, type=Path, help="taxonomy YAML to write (labels, thresholds, prompt)"
    )
    p.add_argument(
        "--min-support", type=int, default=5, help="fewer gold rows: the label gets the global one"
    )
    p.add_argument(
        "--prior", type=prior_value, default="auto",
        help="pull each label's threshold toward the global one as if this many more rows voted for it; "
        "'auto' (default) picks it by cross-validation, 'inf' gives every label the global threshold",
    )  # fmt: skip
    p.add_argument(
        "--target-precision", type=float, help="lowest threshold reaching this precision, not best F1"
    )
    p.add_argument("--holdout", type=float, default=0.3, help="fraction of rows (by text hash) to report on")
    p.set_defaults(func=calibrate_command)

    p = commands.add_parser("fine-tune", help="train a GLiClass checkpoint on labelled rows")
    _add_data(p, model_required=False)
    p.add_argument(
        "--encoder", help="a plain encoder folder to bootstrap a GLiClass model from (not --model)"
    )
    p.add_argument("--out", required=True, type=Path, help="folder for the fine-tuned checkpoint")
    for name, kind, default, text in (
        ("epochs", int, 3, "passes over the rows"),
        ("batch-size", int, 8, "rows per optimizer step"),
        ("encoder-lr", float, 3e-5, "learning rate of the encoder"),
        ("head-lr", float, 1e-3, "learning rate of the GLiClass head (pooler, scorer, new tokens)"),
        ("max-length", int, 256, "tokens per training sequence, labels included"),
        ("negatives", int, None, "labels sampled per row besides its gold ones (default: every label)"),
        ("freeze-layers", int, 0, "bottom encoder layers kept frozen"),
        ("seed", int, 0, "seed for sampling, shuffling and initialisation"),
    ):
        p.add_argument(f"--{name}", type=kind, default=default, help=f"{text} (default {default})")
    p.add_argument("--loss", choices=("bce", "focal"), default="bce", help="training loss (default bce)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.set_defaults(func=fine_tune_command)


def _add_data(p: argparse.ArgumentParser, *, model_required: bool = True) -> None:
    p.add_argument("--model", required=model_required, help="GLiClass checkpoint folder (or hub id)")
    p.add_argument("--input", required=True, help="labelled rows: .parquet, .jsonl or .csv")
    p.add_argument("--text-column", default="text", help="column holding the text (default text)")
    p.add_argument("--gold-column", default="labels", help="gold labels: a list, or delimited text")
    p.add_argument("--delimiter", default=",", help="separates gold labels in text (default ',')")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--labels", help="comma-separated labels")
    group.add_argument("--taxonomy", help="taxonomy file (.yaml, .json, or one label per line)")
    p.add_argument("--max-rows", type=int, default=100_000, help="refuse inputs with more rows than this")


def _rows(args: argparse.Namespace) -> list[tuple[str, tuple[str, ...]]]:
    from gliclass_pipelines.quality.finetune import read_rows

    return read_rows(args.input, text_column=args.text_column, labels_column=args.gold_column,
                     delimiter=args.delimiter, max_rows=args.max_rows)  # fmt: skip


def _taxonomy(args: argparse.Namespace, rows: list) -> Taxonomy:
    if args.taxonomy:
        return Taxonomy.from_file(args.taxonomy)
    if args.labels:
        return Taxonomy.from_labels(split_labels(args.labels))
    found = sorted({label for _, labels in rows for label in labels})
    if not found:
        raise ConfigError("no labels: give --labels or --taxonomy (the gold column has none)")
    return Taxonomy.from_labels(found)


def _scores(args: argparse.Namespace, texts: list[str], taxonomy: Taxonomy) -> list:
    from gliclass_pipelines import Classifier
    from gliclass_pipelines.quality.evaluate import predict_scores

    return predict_scores(Classifier.load(args.model), texts, taxonomy)


def evaluate_command(args: argparse.Namespace) -> int:
    from gliclass_pipelines.quality.evaluate import evaluate, gold_matrix, plot_threshold_curves, score_matrix

    check_claimable(args.out, "evaluate report")
    rows = _rows(args)
    taxonomy = _taxonomy(args, rows)
    predictions = _scores(args, [text for text, _ in rows], taxonomy)
    gold = [labels for _, labels in rows]
    report = evaluate(predictions, None, gold, taxonomy, threshold=args.threshold)
    claim_folder(args.out, "evaluate report")
    _write(args.out / "report.json", report.to_json())
    _write(args.out / "report.md", report.to_markdown())
    labels = list(taxonomy.labels)
    plot_threshold_curves(score_matrix(predictions, labels), gold_matrix(gold, labels), labels,
                          args.out / "thresholds.png")  # fmt: skip
    summary = report.summary()
    print(f"micro-F1 {summary['micro_f1']:.4f}  macro-F1 {summary['macro_f1']:.4f}  "
          f"top-1 {summary['top1_accuracy']:.4f}  rows {report.rows['rows']}  -> {args.out}")  # fmt: skip
    return 0


def calibrate_command(args: argparse.Namespace) -> int:
    from gliclass_pipelines.quality.calibrate import (
        calibrate,
        check_taxonomy_target,
        with_thresholds,
        write_taxonomy,
    )
    from gliclass_pipelines.quality.evaluate import evaluate, gold_matrix, score_matrix

    if not 0 <= args.holdout < 1:
        raise ConfigError(f"--holdout must be a fraction in [0, 1), got {args.holdout}")
    check_taxonomy_target(args.out)
    rows = _rows(args)
    taxonomy = _taxonomy(args, rows)
    held = [_bucket(text) < args.holdout for text, _ in rows]
    fit = [row for row, h in zip(rows, held) if not h]
    report_rows = [row for row, h in zip(rows, held) if h]
    if not fit:
        raise ConfigError("no rows left to fit on; lower --holdout or give more rows")
    labels = list(taxonomy.labels)
    predictions = _scores(args, [text for text, _ in rows], taxonomy)
    fit_predictions = [p for p, h in zip(predictions, held) if not h]
    fit_gold = gold_matrix([g for _, g in fit], labels)
    fitted = calibrate(score_matrix(fit_predictions, labels), fit_gold, labels,
                       min_support=args.min_support, target_precision=args.target_precision,
                       prior=args.prior)  # fmt: skip
    calibrated = with_thresholds(taxonomy, fitted.thresholds)
    write_taxonomy(calibrated, args.out)
    out = {"fit_rows": len(fit), "holdout_rows": len(report_rows), "fallback_labels": list(fitted.fallback),
           "global_threshold": fitted.global_threshold, "prior": fitted.as_dict()["prior"]}  # fmt: skip
    if report_rows:
        held_predictions = [p for p, h in zip(predictions, held) if h]
        gold = [g for _, g in report_rows]
        out["holdout_micro_f1_before"] = evaluate(held_predictions, None, gold, taxonomy).micro_f1
        out["holdout_micro_f1_after"] = evaluate(held_predictions, None, gold, calibrated).micro_f1
    print(json.dumps(out, indent=2))
    return 0


def fine_tune_command(args: argparse.Namespace) -> int:
    from gliclass_pipelines.quality.finetune import FineTuneConfig, bootstrap, fine_tune

    if bool(args.model) == bool(args.encoder):
        raise ConfigError(
            "give exactly one of --model (a GLiClass checkpoint) or --encoder (a plain encoder)"
        )
    check_claimable(args.out, "fine-tune output")
    rows = _rows(args)
    taxonomy = _taxonomy(args, rows)
    config = FineTuneConfig(
        epochs=args.epochs, batch_size=args.batch_size, encoder_lr=args.encoder_lr, head_lr=args.head_lr,
        max_length=args.max_length, negatives=args.negatives, freeze_layers=args.freeze_layers,
        seed=args.seed, loss=args.loss, device=args.device,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gliclass-bootstrap-") as scratch:
        start = args.model
        if args.encoder:
            start = bootstrap(
                args.encoder, Path(scratch) / "model", max_length=args.max_length, seed=args.seed
            )
        result = fine_tune(start, rows, args.out, taxonomy=taxonomy, config=config)
    print(f"fine-tuned on {len(rows)} rows in {result.seconds:.0f} s; epoch losses "
          f"{[round(x, 4) for x in result.epoch_losses]} -> {result.path}")  # fmt: skip
    return 0


def _bucket(text: str) -> float:
    """A fixed number in [0, 1) from a text, to split rows the same way on every run."""
    return int(hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8], 16) / 16**8


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
