"""Command-line arguments: the parser, and a validated Job built from them before any model loads."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.checks import DEFAULT_THRESHOLD, check_positive_int, split_labels
from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.cli.job import DEFAULT_RESULT_COLUMN, MODES, RUNNERS, Job
from gliclass_pipelines.core.results import OUTPUTS
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.io.ownership import check_output_place
from gliclass_pipelines.io.provenance import check_column_free
from gliclass_pipelines.io.readers import (
    FORMATS,
    check_columns,
    check_not_a_device,
    detect_format,
    open_input,
)
from gliclass_pipelines.io.tables import OUTPUT_FORMATS

Command = Callable[[argparse.Namespace], int]
SUMMARY_HELP = (
    "The summary (printed, and written to OUTPUT/_SUCCESS as JSON) counts rows, null inputs (null or blank "
    "text), failed rows (a null result for another reason, e.g. an unreadable record), bad records (JSON "
    "lines or CSV records that could not be read in full; each is logged with its file and line) and "
    "rows/s: rows over the seconds since the job started, model load and Spark/Beam start-up included "
    "(the progress line uses the same definition)."
)
OUTPUT_KIND_HELP = (
    "labels: the labels over the threshold, best first (default); top: the best label whatever the "
    "threshold; scores: every label's score; hierarchical: every label's score by its group (a map of "
    "group path to a map of label to score; the labels must be in groups)"
)


def build_parser(classify: Command, make_test_model: Command) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gliclass-pipelines", description="Run GLiClass zero-shot text classifiers on files."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log model loading and runner details")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser(
        "classify", help="classify a Parquet, JSONL or CSV file into Parquet", epilog=SUMMARY_HELP
    )
    p.set_defaults(func=classify)
    _add_input_output(p)
    _add_classification(p)
    _add_running(p)
    _add_tables(p)
    p = commands.add_parser("make-test-model", help="write a tiny random checkpoint, for demos and CI")
    p.set_defaults(func=make_test_model)
    _add_make_test_model(p)
    from gliclass_pipelines.cli.quality import add_commands  # evaluate, calibrate, fine-tune

    add_commands(commands)
    return parser


def _add_input_output(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("input and output")
    group.add_argument("--input", required=True, help="a file, or a directory of files of one format")
    group.add_argument("--input-format", choices=FORMATS, help="default: from the file extension")
    group.add_argument("--output", required=True, help="the output directory of Parquet part files")
    group.add_argument("--text-column", default="text", help="the column to classify (default: text)")
    group.add_argument("--id-column", help="a column that identifies rows; checked, and named in warnings")
    group.add_argument(
        "--result-column",
        default=DEFAULT_RESULT_COLUMN,
        help=f"the column added for the results (default: {DEFAULT_RESULT_COLUMN})",
    )
    group.add_argument(
        "--mode",
        choices=MODES,
        default="error",
        help="when the output exists: error (default), overwrite it, or skip-existing (exit 0 if "
        "complete). Only a previous output of this tool is ever replaced",
    )


def _add_classification(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("classification")
    group.add_argument("--model", required=True, help="a Hub id[@revision], a local directory or a URI")
    group.add_argument(
        "--labels", help='a taxonomy file (.yaml, .json, or .txt with one label a line) or "a,b,c"'
    )
    group.add_argument("--labels-column", help="a column of per-row labels (a list, or 'a,b,c' text)")
    group.add_argument(
        "--prompt-column", help="a text column of per-row task prompts (a null row takes the shared prompt)"
    )
    group.add_argument(
        "--threshold-column", help="a number column of per-row thresholds (a null row takes --threshold)"
    )
    group.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="the score a label needs (default: %(default)s)",
    )
    multi = group.add_mutually_exclusive_group()
    multi.add_argument(
        "--multi-label",
        dest="multi_label",
        action="store_true",
        default=True,
        help="score each label on its own: any number of labels per text (default)",
    )
    multi.add_argument(
        "--single-label",
        dest="multi_label",
        action="store_false",
        help="scores that sum to 1 across the labels: one label per text",
    )
    group.add_argument(
        "--output-kind",
        choices=OUTPUTS,
        default="labels",
        help=OUTPUT_KIND_HELP,
    )
    group.add_argument(
        "--device", default="auto", help="auto (default: cuda when present), cpu, cuda[:N], mps"
    )
    group.add_argument("--dtype", default="auto", help="auto (default), float32, float16 or bfloat16")
    group.add_argument(
        "--precision",
        default="float32",
        help="float32 (default), or int8: the encoder quantized for CPU, ~3x faster, scores within ~0.1",
    )
    group.add_argument(
        "--long-text",
        choices=("truncate", "chunk"),
        default="truncate",
        help="truncate (default) at --max-length tokens, or chunk: classify overlapping windows",
    )
    group.add_argument(
        "--batch-tokens", type=int, help="padded tokens per forward pass (default: per device)"
    )
    group.add_argument("--max-length", type=int, help="tokens per sequence (default: the model's)")
    group.add_argument("--num-threads", type=int, help="torch CPU threads (default: torch's)")


def _add_running(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("running")
    group.add_argument(
        "--runner", choices=RUNNERS, default="local", help="where to run: local (default), spark or beam"
    )
    group.add_argument("--chunk-rows", type=int, default=1024, help="rows per classify call (local runner)")
    group.add_argument("--rows-per-file", type=int, default=1_000_000, help="rows per part file (local)")
    group.add_argument(
        "--progress",
        choices=("auto", "bar", "log", "none"),
        default="auto",
        help="auto: a bar on a terminal, else log lines (local runner)",
    )
    group.add_argument("--log-every", type=float, default=10.0, help="seconds between progress log lines")
    group.add_argument("--spark-master", default="local[*]", help="default: local[*]")
    group.add_argument(
        "--spark-conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting (repeatable)"
    )
    group.add_argument(
        "--beam-runner", default="FnApiRunner", help="default: FnApiRunner (in-process; no download)"
    )
    group.add_argument(
        "--beam-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Beam pipeline option (repeatable)",
    )


def _add_tables(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("tables, provenance and incremental runs")
    group.add_argument(
        "--output-format",
        choices=OUTPUT_FORMATS,
        default="parquet",
        help="parquet: a folder of part files (default); delta: a Delta Lake table (the delta extra)",
    )
    group.add_argument(
        "--overwrite-table", help="with --mode overwrite: replace this table though another tool made it"
    )
    group.add_argument(
        "--provenance-column", help="add a column holding each row's short model+taxonomy fingerprint"
    )
    group.add_argument(
        "--incremental",
        action="store_true",
        help="classify only rows whose (id, text) is not in --state under the same fingerprint (local)",
    )
    group.add_argument(
        "--state", help="with --incremental: the folder where this tool keeps what it classified"
    )
    group.add_argument(
        "--full", action="store_true", help="with --incremental: classify every row, renew the state"
    )


def check_tables(args: argparse.Namespace, output: Path, places: list[tuple[str, Path]]) -> Path | None:
    """The incremental state folder (None without --incremental); refuses a table write that must not run."""
    if args.provenance_column is not None and args.runner == "beam":
        raise ConfigError("--provenance-column is written by the local and Spark runners (not Beam yet)")
    if args.mode == "append" and args.output_format == "parquet":
        raise ConfigError("--mode append is for table formats (--output-format delta)")
    if args.output_format == "delta":
        from gliclass_pipelines.io.tables import delta

        named = None if args.overwrite_table is None else Path(args.overwrite_table).expanduser()
        delta.check_target(output, args.mode, args.incremental, named)
    if not args.incremental:
        if args.state is not None or args.full:
            raise ConfigError("--state and --full go with --incremental")
        return None
    if args.state is None or args.id_column is None:
        raise ConfigError("--incremental needs --state DIR and --id-column (the rows' identity)")
    if args.runner != "local":
        raise ConfigError("--incremental runs with --runner local for now")
    state = check_output_place(Path(args.state), [*places, ("the output", output)])
    if output == state or output in state.parents:
        raise ConfigError(f"--state {state} must be a folder of its own, outside the output")
    return state


def _add_make_test_model(p: argparse.ArgumentParser) -> None:
    from gliclass_pipelines.testing.checkpoints import ARCHITECTURES, BACKBONES

    p.add_argument("dir", help="the directory to write the checkpoint into")
    p.add_argument("--backbone", choices=BACKBONES, default="bert", help="the encoder (default: bert)")
    p.add_argument(
        "--architecture", choices=ARCHITECTURES, default="uni-encoder", help="default: uni-encoder"
    )
    p.add_argument("--seed", type=int, default=0, help="the random weights' seed (default: 0)")


def job_from_args(args: argparse.Namespace) -> Job:
    """Check everything that can be checked before a model loads or a runner starts."""

    source = Path(args.input).expanduser()
    if not source.exists():
        raise ConfigError(f"input {shorten(source)} does not exist")
    check_not_a_device(source)
    input_format = args.input_format or detect_format(source)
    if args.labels is None and args.labels_column is None:
        raise ConfigError("give --labels (a file or 'a,b,c') or --labels-column")
    check_positive_int(args.chunk_rows, "--chunk-rows", optional=False)
    check_positive_int(args.rows_per_file, "--rows-per-file", optional=False)
    config = config_from_args(args)
    places = protected_places(source, args)
    output = check_output_place(Path(args.output), places)
    if source.resolve() in output.parents:
        raise ConfigError(f"output {output} is inside the input directory {source.resolve()}")
    state = check_tables(args, output, places)
    if input_format == "delta" and args.runner != "local":
        raise ConfigError("a Delta table as --input is read by --runner local for now")
    job = Job(
        input=source.resolve(),
        input_format=input_format,
        output=output,
        text_column=args.text_column,
        id_column=args.id_column,
        labels_column=args.labels_column,
        prompt_column=args.prompt_column,
        threshold_column=args.threshold_column,
        result_column=args.result_column,
        mode=args.mode,
        runner=args.runner,
        config=config,
        source=open_input(source.resolve(), input_format, args.text_column, args.id_column),
        chunk_rows=args.chunk_rows,
        rows_per_file=args.rows_per_file,
        progress=args.progress,
        log_every=args.log_every,
        runner_options=runner_options(args),
        provenance_column=args.provenance_column,
        output_format=args.output_format,
        overwrite_table=None if args.overwrite_table is None else Path(args.overwrite_table),
        state=state,
    )
    check_columns(job, job.source.schema)
    check_column_free(job.source.schema, job.provenance_column)
    if state is not None:
        from dataclasses import replace

        from gliclass_pipelines.io.incremental import load_state

        job = replace(job, previous=load_state(state, config.fingerprint(), args.full))
    return job


def config_from_args(args: argparse.Namespace) -> Any:
    """The job's ClassifyConfig from the classification flags."""
    from gliclass_pipelines.core.config import ClassifyConfig

    return ClassifyConfig(
        model=args.model,
        labels=None if args.labels is None else parse_labels(args.labels),
        per_row_labels=args.labels_column is not None,
        threshold=args.threshold,
        multi_label=args.multi_label,
        output=args.output_kind,
        device=args.device,
        dtype=args.dtype,
        long_text=args.long_text,
        batch_tokens=args.batch_tokens,
        max_length=args.max_length,
        num_threads=args.num_threads,
        precision=args.precision,
    )


def runner_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "spark_master": args.spark_master,
        "spark_conf": parse_pairs(args.spark_conf, "--spark-conf"),
        "beam_runner": args.beam_runner,
        "beam_options": parse_pairs(args.beam_option, "--beam-option"),
    }


def protected_places(source: Path, args: argparse.Namespace) -> list[tuple[str, Path]]:
    """Folders an output must never be or hold: replacing it would take them along."""
    from gliclass_pipelines.model.sources import ModelSource, remote_cache_root

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
    from gliclass_pipelines.taxonomy.taxonomy import Taxonomy

    path = Path(value).expanduser()
    if path.is_file():
        return Taxonomy.from_file(path)
    if path.suffix.lower() in (".yaml", ".yml", ".json", ".txt") and "," not in value:
        raise ConfigError(f"labels file {shorten(path)} does not exist")
    labels = split_labels(value)
    if not labels:
        raise ConfigError(f"--labels {shorten(repr(value))} names no labels; give a file or 'a,b,c'")
    return labels


def parse_pairs(pairs: Sequence[str], option: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} takes KEY=VALUE, got {shorten(repr(pair))}")
        out[key.strip()] = value
    return out
