"""Command-line arguments: the parser, and a validated Job built from them before any model loads."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gliclass_pipelines.cli.inputs import FORMATS, check_columns, detect_format, input_schema
from gliclass_pipelines.cli.job import DEFAULT_RESULT_COLUMN, ENGINES, MODES, Job
from gliclass_pipelines.cli.ownership import check_output_place
from gliclass_pipelines.errors import ConfigError

Command = Callable[[argparse.Namespace], int]


def build_parser(classify: Command, make_test_model: Command) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gliclass-pipelines", description="Run GLiClass zero-shot text classifiers on files."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log model loading and engine details")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("classify", help="classify a Parquet, JSONL or CSV file into Parquet")
    p.set_defaults(func=classify)
    _add_classify(p)
    p = commands.add_parser("make-test-model", help="write a tiny random checkpoint, for demos and CI")
    p.set_defaults(func=make_test_model)
    _add_make_test_model(p)
    return parser


def _add_classify(p: argparse.ArgumentParser) -> None:
    io_ = p.add_argument_group("input and output")
    io_.add_argument("--input", required=True, help="a file, or a directory of files of one format")
    io_.add_argument("--input-format", choices=FORMATS, help="default: from the file extension")
    io_.add_argument("--output", required=True, help="the output directory of Parquet part files")
    io_.add_argument("--text-column", default="text", help="the column to classify (default: text)")
    io_.add_argument("--id-column", help="a column that identifies rows; checked, and named in warnings")
    io_.add_argument(
        "--result-column", default=DEFAULT_RESULT_COLUMN, help=f"default: {DEFAULT_RESULT_COLUMN}"
    )
    io_.add_argument(
        "--mode",
        choices=MODES,
        default="error",
        help="when the output exists: error (default), overwrite it, or skip-existing (exit 0 if complete)",
    )
    model = p.add_argument_group("classification")
    model.add_argument("--model", required=True, help="a Hub id[@revision], a local directory or a URI")
    model.add_argument(
        "--labels", help='a taxonomy file (.yaml, .json, or .txt with one label a line) or "a,b,c"'
    )
    model.add_argument("--labels-column", help="a column of per-row labels (a list, or 'a,b,c' text)")
    model.add_argument("--threshold", type=float, default=0.5, help="default: 0.5")
    multi = model.add_mutually_exclusive_group()
    multi.add_argument("--multi-label", dest="multi_label", action="store_true", default=True)
    multi.add_argument("--single-label", dest="multi_label", action="store_false")
    model.add_argument("--result-type", choices=("labels", "top", "scores"), default="labels")
    model.add_argument("--device", default="auto")
    model.add_argument("--dtype", default="auto")
    model.add_argument("--long-text", choices=("truncate", "chunk"), default="truncate")
    model.add_argument("--batch-tokens", type=int)
    model.add_argument("--max-length", type=int)
    model.add_argument("--num-threads", type=int)
    run = p.add_argument_group("engine")
    run.add_argument("--engine", choices=ENGINES, default="local")
    run.add_argument("--chunk-rows", type=int, default=1024, help="rows per classify call (local engine)")
    run.add_argument("--rows-per-file", type=int, default=1_000_000, help="rows per part file (local)")
    run.add_argument(
        "--progress",
        choices=("auto", "bar", "log", "none"),
        default="auto",
        help="auto: a bar on a terminal, else log lines",
    )
    run.add_argument("--log-every", type=float, default=10.0, help="seconds between progress log lines")
    run.add_argument("--spark-master", default="local[*]")
    run.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument(
        "--beam-runner", default="FnApiRunner", help="default: FnApiRunner (in-process; no download)"
    )
    run.add_argument("--beam-option", action="append", default=[], metavar="KEY=VALUE")


def _add_make_test_model(p: argparse.ArgumentParser) -> None:
    from gliclass_pipelines.testing import ARCHITECTURES, BACKBONES

    p.add_argument("dir", help="the directory to write the checkpoint into")
    p.add_argument("--backbone", choices=BACKBONES, default="bert")
    p.add_argument("--architecture", choices=ARCHITECTURES, default="uni-encoder")
    p.add_argument("--seed", type=int, default=0)


def job_from_args(args: argparse.Namespace) -> Job:
    """Check everything that can be checked before a model loads or an engine starts."""
    from gliclass_pipelines.config import ClassifyConfig

    source = Path(args.input).expanduser()
    if not source.exists():
        raise ConfigError(f"input {source} does not exist")
    input_format = args.input_format or detect_format(source)
    if args.labels is None and args.labels_column is None:
        raise ConfigError("give --labels (a file or 'a,b,c') or --labels-column")
    for name in ("chunk_rows", "rows_per_file"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer")
    config = ClassifyConfig(
        model=args.model,
        labels=None if args.labels is None else parse_labels(args.labels),
        per_row_labels=args.labels_column is not None,
        threshold=args.threshold,
        multi_label=args.multi_label,
        output=args.result_type,
        device=args.device,
        dtype=args.dtype,
        long_text=args.long_text,
        batch_tokens=args.batch_tokens,
        max_length=args.max_length,
        num_threads=args.num_threads,
    )
    job = Job(
        input=source.resolve(),
        input_format=input_format,
        output=check_output_place(Path(args.output), protected_places(source, args)),
        text_column=args.text_column,
        id_column=args.id_column,
        labels_column=args.labels_column,
        result_column=args.result_column,
        mode=args.mode,
        engine=args.engine,
        config=config,
        chunk_rows=args.chunk_rows,
        rows_per_file=args.rows_per_file,
        progress=args.progress,
        log_every=args.log_every,
        engine_options={
            "spark_master": args.spark_master,
            "spark_conf": parse_pairs(args.spark_conf, "--spark-conf"),
            "beam_runner": args.beam_runner,
            "beam_options": parse_pairs(args.beam_option, "--beam-option"),
        },
    )
    check_columns(job, input_schema(job.input, job.input_format))
    if job.input in job.output.parents:
        raise ConfigError(f"output {job.output} is inside the input directory {job.input}")
    return job


def protected_places(source: Path, args: argparse.Namespace) -> list[tuple[str, Path]]:
    """Folders an output must never be or hold: replacing it would take them along."""
    from gliclass_pipelines.loading import ModelSource, remote_cache_root

    places = [("the working folder", Path.cwd()), ("the input", source)]
    with contextlib.suppress(RuntimeError, KeyError):  # no home folder known
        places.append(("the home folder", Path.home()))
    model = ModelSource.parse(args.model)
    if model.kind == "local":
        places.append(("the model", Path(model.location)))
    elif model.kind == "remote":
        places.append(("the model cache", remote_cache_root()))
    if args.labels is not None and Path(args.labels).expanduser().is_file():
        places.append(("the labels file", Path(args.labels).expanduser()))
    return places


def parse_labels(value: str) -> Any:
    """A taxonomy file (YAML, JSON or one label a line), or labels separated by commas."""
    from gliclass_pipelines.taxonomy import Taxonomy

    path = Path(value).expanduser()
    if path.is_file():
        return Taxonomy.from_file(path)
    if path.suffix.lower() in (".yaml", ".yml", ".json", ".txt") and "," not in value:
        raise ConfigError(f"labels file {path} does not exist")
    labels = [label.strip() for label in value.split(",") if label.strip()]
    if not labels:
        raise ConfigError(f"--labels {value!r} names no labels; give a file or 'a,b,c'")
    return labels


def parse_pairs(pairs: Sequence[str], option: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} takes KEY=VALUE, got {pair!r}")
        out[key.strip()] = value
    return out
