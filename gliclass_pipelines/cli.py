"""The ``gliclass-pipelines`` command, for scheduled jobs: classify a file into Parquet, make a test model.

``classify`` reads Parquet, JSONL or CSV, adds one result column (the Spark UDF's schema) and writes a
directory of Parquet part files. The directory appears only when the job is done: parts go to a
temporary directory beside the output, ``_SUCCESS`` (a JSON summary) is written last, and the
temporary directory is renamed into place. A killed run leaves no output that looks complete.

Exit codes: 0 done (or skipped), 1 the job failed, 2 bad arguments or configuration (or the output
exists under ``--mode error``), 3 the model could not be loaded, 130/143 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gliclass_pipelines.errors import ConfigError, GLiClassPipelinesError, ModelLoadError

logger = logging.getLogger("gliclass_pipelines.cli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3
ENGINES = ("local", "spark", "beam")
MODES = ("error", "overwrite", "skip-existing")
FORMATS = ("parquet", "jsonl", "csv")
EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
}
COMPRESSIONS = (".gz", ".bz2", ".zst", ".lz4")
DEFAULT_RESULT_COLUMN = "gliclass"  # classify_dataframe's default output_col
SUCCESS = "_SUCCESS"
ROW_GROUP_ROWS = 65_536


class OutputExistsError(ConfigError):
    """The output is there already and --mode error forbids replacing it."""


class EngineError(GLiClassPipelinesError):
    """Spark or Beam failed; the message is the engine's error, without its long traceback."""


class Terminated(BaseException):
    """SIGTERM, turned into an exception so the temporary output is removed on the way out."""


# -------------------------------------------------------------------------------------------------------
# Arguments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gliclass-pipelines", description="Run GLiClass zero-shot text classifiers on files."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log model loading and engine details")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_classify(commands.add_parser("classify", help="classify a Parquet, JSONL or CSV file into Parquet"))
    _add_make_test_model(
        commands.add_parser("make-test-model", help="write a tiny random checkpoint, for demos and CI")
    )
    return parser


def _add_classify(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=classify_command)
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

    p.set_defaults(func=make_test_model_command)
    p.add_argument("dir", help="the directory to write the checkpoint into")
    p.add_argument("--backbone", choices=BACKBONES, default="bert")
    p.add_argument("--architecture", choices=ARCHITECTURES, default="uni-encoder")
    p.add_argument("--seed", type=int, default=0)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: run a command, turn known errors into a message and an exit code."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return args.func(args)
    except OutputExistsError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ConfigError as exc:
        return _fail(f"invalid configuration: {exc}", EXIT_USAGE)
    except ModelLoadError as exc:
        return _fail(str(exc), EXIT_MODEL)
    except KeyboardInterrupt:
        return _fail("interrupted; no output was written", 130)
    except Terminated:
        return _fail("terminated; no output was written", 143)
    except (GLiClassPipelinesError, OSError, ValueError, RuntimeError) as exc:
        logger.debug("job failed", exc_info=True)
        return _fail(f"job failed: {type(exc).__name__}: {exc}", EXIT_FAILED)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _fail(message: str, code: int) -> int:
    print(f"gliclass-pipelines: error: {message}", file=sys.stderr)
    return code


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def _configure_logging(verbose: bool) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info" if verbose else "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    logging.basicConfig(format="gliclass-pipelines: %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gliclass_pipelines").setLevel(logging.INFO if verbose else logging.WARNING)
    # per-chunk row indices mean little here; the CLI names failed rows by their global row and id
    logging.getLogger("gliclass_pipelines.config").setLevel(logging.ERROR)


# -------------------------------------------------------------------------------------------------------
# The job


@dataclass(frozen=True)
class Job:
    """One validated classify run."""

    input: Path
    input_format: str
    output: Path
    text_column: str
    id_column: str | None
    labels_column: str | None
    result_column: str
    mode: str
    engine: str
    config: Any  # ClassifyConfig
    chunk_rows: int = 1024
    rows_per_file: int = 1_000_000
    progress: str = "auto"
    log_every: float = 10.0
    engine_options: dict[str, Any] = field(default_factory=dict)

    @property
    def result_type(self) -> str:
        return self.config.output


@dataclass
class Summary:
    """What a run did, printed at the end and written into _SUCCESS."""

    engine: str
    output: str
    rows: int = 0
    null_inputs: int = 0
    truncated: int | None = 0
    failed: int = 0
    seconds: float = 0.0
    model_load_seconds: float | None = None
    parts: int = 0

    @property
    def rows_per_second(self) -> float:
        """Classification throughput: the model's load time, when known, does not count."""
        busy = self.seconds - (self.model_load_seconds or 0.0)
        return self.rows / busy if busy > 0 else 0.0

    def add(self, stats: Counter) -> None:
        self.rows += stats.get("rows", 0)
        self.null_inputs += stats.get("null_inputs", 0)
        self.failed += stats.get("failed", 0)
        if self.truncated is not None:
            self.truncated += stats.get("truncated", 0)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "rows_per_second": round(self.rows_per_second, 2)}, indent=2)

    def lines(self) -> list[str]:
        def show(value: Any) -> str:
            return "n/a" if value is None else str(value)

        load = "n/a" if self.model_load_seconds is None else f"{self.model_load_seconds:.1f}s"
        return [
            f"gliclass-pipelines: done with the {self.engine} engine in {self.seconds:.1f}s",
            f"  rows          {self.rows}",
            f"  rows/s        {self.rows_per_second:.1f}",
            f"  null inputs   {self.null_inputs}",
            f"  truncated     {show(self.truncated)}",
            f"  failed        {self.failed}",
            f"  model load    {load}",
            f"  output        {self.output} ({self.parts} part file{'s' if self.parts != 1 else ''})",
        ]


def classify_command(args: argparse.Namespace) -> int:
    job = job_from_args(args)
    if should_skip(job.output, job.mode):
        print(f"gliclass-pipelines: {job.output} is complete ({SUCCESS} present); skipped")
        return EXIT_OK
    summary = run_job(job)
    print("\n".join(summary.lines()))
    return EXIT_OK


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
        output=Path(args.output).expanduser().resolve(),
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
    if job.input == job.output or job.output in job.input.parents:
        raise ConfigError(f"output {job.output} would replace the input {job.input}")
    if job.input in job.output.parents:
        raise ConfigError(f"output {job.output} is inside the input directory {job.input}")
    return job


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


def run_job(job: Job) -> Summary:
    """Write into a temporary directory beside the output, then commit it; remove it on any failure."""
    remove_stale_temporaries(job.output)
    temp = temporary_path(job.output)
    started = time.perf_counter()
    try:
        summary = ENGINE_RUNNERS[job.engine](job, temp)
        summary.seconds = time.perf_counter() - started
        summary.parts = len(part_files(temp))
        commit(temp, job.output, job.mode, summary.to_json())
        return summary
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


# -------------------------------------------------------------------------------------------------------
# Atomic output


def should_skip(output: Path, mode: str) -> bool:
    """True when --mode skip-existing finds a complete output; raises under --mode error if it exists."""
    if not output.exists() and not output.is_symlink():
        return False
    if mode == "error":
        raise OutputExistsError(
            f"output {output} already exists; pass --mode overwrite to replace it, "
            "or --mode skip-existing to keep a complete one"
        )
    if mode == "skip-existing" and (output / SUCCESS).is_file():
        return True
    if mode == "skip-existing":
        logger.warning("%s exists without %s (an incomplete run); replacing it", output, SUCCESS)
    return False


def temporary_path(output: Path) -> Path:
    host = socket.gethostname().replace("-", "_")
    return output.parent / f"{output.name}.tmp-{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_stale_temporaries(output: Path) -> None:
    """Remove temporary directories left by killed runs on this host (their process is gone)."""
    host = socket.gethostname().replace("-", "_")
    for path in output.parent.glob(f"{output.name}.tmp-*"):
        owner, _, pid_tag = path.name[len(output.name) + len(".tmp-") :].rpartition("-")[0].rpartition("-")
        if owner == host and pid_tag.isdigit() and not _alive(int(pid_tag)):
            logger.warning("removing %s, left by a killed run", path)
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def commit(temp: Path, output: Path, mode: str, success: str) -> None:
    """Write _SUCCESS last, flush, and rename the finished directory into place."""
    (temp / SUCCESS).write_text(success + "\n", encoding="utf-8")
    with contextlib.suppress(FileNotFoundError):
        (temp / f".{SUCCESS}.crc").unlink()  # Spark's checksum of its own, empty marker
    for path in temp.rglob("*"):
        if path.is_file():
            _fsync(path)
    _fsync(temp)
    if output.exists() or output.is_symlink():
        if mode == "error":
            raise OutputExistsError(f"output {output} appeared while this job ran; nothing was replaced")
        old = output.parent / f"{output.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(output, old)
        os.rename(temp, output)
        _remove(old)
    else:
        os.rename(temp, output)
    _fsync(output.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def part_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix == ".parquet" and p.name[0] not in "._")


# -------------------------------------------------------------------------------------------------------
# Input


def detect_format(path: Path) -> str:
    files = input_files(path, None) if path.is_dir() else [path]
    found = {_format_of(f) for f in files} - {None}
    if len(found) != 1:
        where = f"the files in {path}" if path.is_dir() else str(path)
        raise ConfigError(
            f"cannot tell the format of {where} from the extension; pass --input-format {'|'.join(FORMATS)}"
        )
    return found.pop()


def _format_of(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes.pop()
    return EXTENSIONS.get(suffixes[-1]) if suffixes else None


def input_files(path: Path, input_format: str | None) -> list[Path]:
    """The file itself, or a directory's data files in name order (skipping _ and . names)."""
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path)))
    if input_format is not None:
        matching = [p for p in files if _format_of(p) == input_format]
        files = matching or files
    if not files:
        raise ConfigError(f"input directory {path} holds no data files")
    return files


def _hidden(relative: Path) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.parts)


def input_schema(path: Path, input_format: str) -> Any:
    return _READERS[input_format](input_files(path, input_format)[0], 1 << 20)[0]


def check_columns(job: Job, schema: Any) -> None:
    import pyarrow as pa

    names = schema.names
    if not names:  # an empty JSONL file: nothing to check
        return
    for option, column in (
        ("--text-column", job.text_column),
        ("--id-column", job.id_column),
        ("--labels-column", job.labels_column),
    ):
        if column is not None and column not in names:
            raise ConfigError(
                f"{option} {column!r} is not a column of {job.input}; columns: {', '.join(names)}"
            )
    if job.result_column in names:
        raise ConfigError(f"the input already has a column {job.result_column!r}; choose --result-column")
    text_type = schema.field(job.text_column).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type) or text_type == pa.null()):
        raise ConfigError(f"--text-column {job.text_column!r} holds {text_type}, not text")


def read_chunks(job: Job) -> tuple[Any, Iterator[Any]]:
    """The input's schema and an iterator of tables of ``job.chunk_rows`` rows, in input order."""
    files = input_files(job.input, job.input_format)
    schema, _ = _READERS[job.input_format](files[0], 1 << 20)

    def batches() -> Iterator[Any]:
        for path in files:
            _, reader = _READERS[job.input_format](path, 1 << 20)
            for batch in reader:
                yield _conform(batch, schema, path)

    return schema, rechunk(batches(), schema, job.chunk_rows)


def count_rows(job: Job) -> int | None:
    """The number of input rows, for the progress bar's total and ETA."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = input_files(job.input, job.input_format)
    if job.input_format == "parquet":
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    total = 0
    for path in files:
        with pa.input_stream(str(path), compression="detect") as stream:
            if job.input_format == "csv":  # records, not lines: quoted values may hold newlines
                text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
                total += max(sum(1 for record in csv.reader(text) if record) - 1, 0)
            else:
                total += sum(1 for line in io.BufferedReader(stream) if line.strip())
    return total


def _conform(batch: Any, schema: Any, path: Path) -> Any:
    if batch.schema.equals(schema):
        return batch
    try:
        return batch.select(schema.names).cast(schema)
    except (KeyError, ValueError, NotImplementedError) as exc:
        raise ConfigError(f"{path} does not match the schema of the first input file ({exc})") from exc


def rechunk(batches: Iterator[Any], schema: Any, size: int) -> Iterator[Any]:
    import pyarrow as pa

    pending, count = [], 0
    for batch in batches:
        while batch.num_rows:
            take = min(size - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            batch, count = batch.slice(take), count + take
            if count == size:
                yield pa.Table.from_batches(pending, schema=schema)
                pending, count = [], 0
    if count:
        yield pa.Table.from_batches(pending, schema=schema)


def _read_parquet(path: Path, batch_rows: int) -> tuple[Any, Iterator[Any]]:
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(path)
    return handle.schema_arrow, handle.iter_batches(batch_size=min(batch_rows, 65_536))


def _read_jsonl(path: Path, block_size: int) -> tuple[Any, Iterator[Any]]:
    import pyarrow as pa
    import pyarrow.json as pj

    def open_(schema: Any = None) -> Any:
        options = pj.ParseOptions(explicit_schema=schema) if schema is not None else pj.ParseOptions()
        stream = pa.input_stream(str(path), compression="detect")
        return pj.open_json(stream, read_options=pj.ReadOptions(block_size=block_size), parse_options=options)

    try:
        reader = open_()
    except pa.ArrowInvalid as exc:
        if "Empty JSON" in str(exc):
            return pa.schema([]), iter(())
        raise ConfigError(f"{path} is not valid JSON lines: {exc}") from exc
    # Read as text what Arrow guesses as timestamps (Spark and json.loads keep strings), and columns
    # that are null throughout the first block (rather than fail on their first value).
    guessed = [f.name for f in reader.schema if pa.types.is_null(f.type) or pa.types.is_timestamp(f.type)]
    if not guessed:
        return reader.schema, iter(reader)
    schema = pa.schema([f.with_type(pa.string()) if f.name in guessed else f for f in reader.schema])
    return schema, iter(open_(schema))


def _read_csv(path: Path, block_size: int) -> tuple[Any, Iterator[Any]]:
    """Every column as text, like Spark's CSV reader with a header, so ids keep their leading zeros."""
    import pyarrow as pa
    import pyarrow.csv as pc

    with pa.input_stream(str(path), compression="detect") as stream:
        header = next(csv.reader(io.TextIOWrapper(stream, encoding="utf-8", newline="")), None)
    if not header:
        raise ConfigError(f"{path} has no header line")
    convert = pc.ConvertOptions(column_types={name: pa.string() for name in header})
    reader = pc.open_csv(
        pa.input_stream(str(path), compression="detect"),
        read_options=pc.ReadOptions(block_size=block_size),
        parse_options=pc.ParseOptions(newlines_in_values=True),
        convert_options=convert,
    )
    return reader.schema, iter(reader)


_READERS: dict[str, Callable[[Path, int], tuple[Any, Iterator[Any]]]] = {
    "parquet": _read_parquet,
    "jsonl": _read_jsonl,
    "csv": _read_csv,
}


# -------------------------------------------------------------------------------------------------------
# Local engine


def run_local(job: Job, temp: Path) -> Summary:
    import pyarrow as pa

    from gliclass_pipelines.results import arrow_type, to_arrow

    summary = Summary(engine="local", output=str(job.output))
    classifier = job.config.classifier()
    summary.model_load_seconds = classifier.load_seconds
    schema, chunks = read_chunks(job)
    if job.text_column not in schema.names:  # an empty JSONL file has no columns at all
        schema = pa.schema([pa.field(job.text_column, pa.string())])
    result_field = pa.field(job.result_column, arrow_type(job.result_type))
    total = count_rows(job) if job.progress != "none" else None
    temp.mkdir(parents=True)
    with (
        PartWriter(temp, schema.append(result_field), job.rows_per_file) as writer,
        Progress(total, job.progress, job.log_every) as progress,
    ):
        for chunk in chunks:
            texts = chunk.column(job.text_column).to_pylist()
            records, out = job.config.classify(texts, _row_labels(job, chunk), classifier=classifier)
            _warn_failed(job, chunk, out.reasons, summary.rows)
            writer.write(chunk.append_column(result_field, to_arrow(records, job.result_type)))
            summary.add(out.stats)
            progress.update(len(texts))
    return summary


def _row_labels(job: Job, chunk: Any) -> list[Any] | None:
    if job.labels_column is None:
        return None
    values = chunk.column(job.labels_column).to_pylist()
    return [[x.strip() for x in v.split(",") if x.strip()] if isinstance(v, str) else v for v in values]


def _warn_failed(job: Job, chunk: Any, reasons: Sequence[str | None], offset: int) -> None:
    failed = [(i, r) for i, r in enumerate(reasons) if r is not None and r not in ("null text", "blank text")]
    ids = chunk.column(job.id_column).to_pylist() if job.id_column and failed else None
    for i, reason in failed[:5]:
        where = f"row {offset + i}" + (f" (id {ids[i]!r})" if ids else "")
        logger.warning("%s has a null result: %s", where, reason)
    if len(failed) > 5:
        logger.warning("... and %d more rows with a null result in this chunk", len(failed) - 5)


class PartWriter:
    """Parquet part files of at most ``rows_per_file`` rows, in order, in row groups of ROW_GROUP_ROWS."""

    def __init__(self, directory: Path, schema: Any, rows_per_file: int) -> None:
        self.directory, self.schema, self.rows_per_file = directory, schema, rows_per_file
        self.writer: Any = None
        self.parts = self.rows_in_part = 0
        self.pending: list[Any] = []
        self.pending_rows = 0

    def write(self, table: Any) -> None:
        while table.num_rows:
            take = min(table.num_rows, self.rows_per_file - self.rows_in_part)
            self.pending.append(table.slice(0, take))
            self.pending_rows += take
            self.rows_in_part += take
            table = table.slice(take)
            if self.pending_rows >= ROW_GROUP_ROWS or self.rows_in_part == self.rows_per_file:
                self._flush()
            if self.rows_in_part == self.rows_per_file:
                self._close_part()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:
            path = self.directory / f"part-{self.parts:05d}.parquet"
            self.writer = pq.ParquetWriter(path, self.schema, compression="snappy")
        if self.pending:
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=ROW_GROUP_ROWS)
        self.pending, self.pending_rows = [], 0

    def _close_part(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.parts += 1
        self.rows_in_part = 0

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is None and (self.pending or self.parts == 0):
            self._flush()  # an empty input still gets one part, so readers see the schema
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Progress:
    """A progress bar on a terminal, or a log line every ``every`` seconds."""

    def __init__(self, total: int | None, style: str, every: float) -> None:
        if style == "auto":
            style = "bar" if sys.stderr.isatty() else "log"
        self.total, self.style, self.every = total, style, every
        self.done = self.logged_rows = 0
        self.started = self.logged = time.perf_counter()
        self.bar: Any = None
        if style == "bar":
            from tqdm import tqdm

            columns, lines = _terminal_size()  # a pty may say 0 x 0: tqdm would then print nothing
            self.bar = tqdm(
                total=total,
                unit=" rows",
                file=sys.stderr,
                dynamic_ncols=columns > 0,
                ncols=None if columns > 0 else 80,
                nrows=lines if lines > 0 else 24,
                smoothing=0.1,
            )

    def update(self, rows: int) -> None:
        self.done += rows
        if self.bar is not None:
            self.bar.update(rows)
            return
        now = time.perf_counter()
        if self.style == "log" and (self.done == rows or now - self.logged >= self.every):
            self._log(now)

    def _log(self, now: float) -> None:
        self.logged, self.logged_rows = now, self.done
        print(f"gliclass-pipelines: {self.line(now)}", file=sys.stderr, flush=True)

    def line(self, now: float) -> str:
        rate = self.done / max(now - self.started, 1e-9)
        if not self.total:
            return f"{self.done} rows, {rate:.1f} rows/s"
        left = max(self.total - self.done, 0) / rate if rate > 0 else 0.0
        share = 100.0 * min(self.done / self.total, 1.0)
        return f"{self.done}/{self.total} rows ({share:.0f}%), {rate:.1f} rows/s, ETA {_duration(left)}"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.style == "log" and kind is None and self.done != self.logged_rows:
            self._log(time.perf_counter())


def _terminal_size() -> tuple[int, int]:
    try:
        return tuple(os.get_terminal_size(sys.stderr.fileno()))
    except (OSError, ValueError, AttributeError):
        return 0, 0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# -------------------------------------------------------------------------------------------------------
# Spark and Beam engines


def run_spark(job: Job, temp: Path) -> Summary:
    """spark.read -> classify_dataframe -> write.parquet(temp); Spark's own _SUCCESS is replaced at commit."""
    check_model_early(job, local=job.engine_options["spark_master"].startswith("local"))
    spark, created = spark_session(job)
    try:
        df = read_spark(spark, job)
        labels_col = None
        if job.labels_column is not None:
            df, labels_col = spark_labels_column(df, job.labels_column)
        out = classify_dataframe_for(job, df, labels_col)
        if labels_col != job.labels_column and labels_col is not None:
            out = out.drop(labels_col)
        out.write.parquet(str(temp))
    except Exception as exc:
        if isinstance(exc, GLiClassPipelinesError):
            raise
        raise EngineError(f"Spark failed: {short_error(exc)}") from exc
    finally:
        if created:
            spark.stop()
    summary = stats_from_output(job, temp)
    summary.truncated = None  # counted inside the executors, not reported back
    return summary


def spark_session(job: Job) -> tuple[Any, bool]:
    """The active SparkSession (then the options are not applied), or a new one that the job stops."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        logger.info("using the active SparkSession; --spark-master and --spark-conf are not applied")
        return active, False
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers need this Python's packages
    builder = SparkSession.builder.master(job.engine_options["spark_master"]).appName("gliclass-pipelines")
    for key, value in job.engine_options["spark_conf"].items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark, True


def read_spark(spark: Any, job: Job) -> Any:
    path = str(job.input)
    if job.input_format == "parquet":
        return spark.read.parquet(path)
    if job.input_format == "csv":  # RFC 4180: "" escapes a quote, quoted values may hold newlines
        return spark.read.options(header=True, escape='"', multiLine=True).csv(path)
    df = spark.read.json(path)
    order = [name for name in input_schema(job.input, "jsonl").names if name in df.columns]
    return df.select(*order, *[c for c in df.columns if c not in order])  # file order, not Spark's sorted


def spark_labels_column(df: Any, column: str) -> tuple[Any, str]:
    """Per-row labels as array<string>: as is, or split from 'a,b,c' text into a temporary column."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    if not isinstance(df.schema[column].dataType, StringType):
        return df, column
    split = F.filter(F.transform(F.split(F.col(column), ","), lambda x: F.trim(x)), lambda x: x != "")
    return df.withColumn("__gliclass_labels", split), "__gliclass_labels"


def classify_dataframe_for(job: Job, df: Any, labels_col: str | None) -> Any:
    from gliclass_pipelines.spark import classify_dataframe

    config = job.config
    return classify_dataframe(
        df,
        job.text_column,
        output_col=job.result_column,
        labels_col=labels_col,
        **_engine_settings(config),
    )


def _engine_settings(config: Any) -> dict[str, Any]:
    return {
        "model": config.model,
        "labels": config.labels,
        "threshold": config.threshold,
        "multi_label": config.multi_label,
        "output": config.output,
        "device": config.device,
        "dtype": config.dtype,
        "long_text": config.long_text,
        "batch_tokens": config.batch_tokens,
        "max_length": config.max_length,
        "num_threads": config.num_threads,
    }


def run_beam(job: Job, temp: Path) -> Summary:
    """ReadAllFromText/Parquet -> ClassifyText -> results and dead letters -> WriteToParquet(temp)."""
    import apache_beam as beam
    import pyarrow as pa
    from apache_beam.options.pipeline_options import PipelineOptions

    from gliclass_pipelines.beam import ClassifyText
    from gliclass_pipelines.results import arrow_type

    if job.input_format not in ("jsonl", "parquet"):
        raise ConfigError(f"--engine beam reads jsonl or parquet, not {job.input_format}")
    runner = job.engine_options["beam_runner"]
    check_model_early(job, local=runner in ("DirectRunner", "FnApiRunner", "BundleBasedDirectRunner"))
    schema = input_schema(job.input, job.input_format)
    if job.text_column not in schema.names:
        schema = pa.schema([pa.field(job.text_column, pa.string())])
    out_schema = schema.append(pa.field(job.result_column, arrow_type(job.result_type)))
    flags = [f"--runner={runner}"] + [f"--{k}={v}" for k, v in job.engine_options["beam_options"].items()]
    shape = _BeamRow(schema.names, job.result_column, job.result_type)
    temp.mkdir(parents=True)
    pipeline = beam.Pipeline(options=PipelineOptions(flags))
    files = pipeline | "Files" >> beam.Create([str(f) for f in input_files(job.input, job.input_format)])
    if job.input_format == "jsonl":
        rows = (
            files
            | "Read" >> beam.io.ReadAllFromText()
            | "NonBlank" >> beam.Filter(lambda line: bool(line.strip()))
            | "Parse" >> beam.Map(json.loads)
        )
    else:
        rows = files | "Read" >> beam.io.ReadAllFromParquet()
    labels_field = job.labels_column
    settings = _engine_settings(job.config)
    if labels_field is not None:
        rows = rows | "SplitLabels" >> beam.Map(_split_labels, labels_field)
    classified = rows | "Classify" >> ClassifyText(
        text_field=job.text_column, labels_field=labels_field, **settings
    )
    ok = classified.results | "Results" >> beam.Map(lambda r: shape(r.example, r.inference))
    dead = classified.dead_letters | "DeadLetters" >> beam.Map(lambda d: shape(d["element"], None))
    _ = (
        (ok, dead)
        | "All" >> beam.Flatten()
        | "Write"
        >> beam.io.WriteToParquet(
            str(temp / "part"), out_schema, file_name_suffix=".parquet", use_compliant_nested_type=True
        )
    )
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except Exception as exc:
        if isinstance(exc, GLiClassPipelinesError):
            raise
        raise EngineError(f"Beam failed: {short_error(exc)}") from exc
    summary = stats_from_output(job, temp)
    summary.truncated = beam_counter(result, "truncated")
    return summary


class _BeamRow:
    """An output row: the input's columns in schema order, then the result (maps as pairs, for Arrow)."""

    def __init__(self, names: Sequence[str], result_column: str, result_type: str) -> None:
        self.names, self.result_column, self.result_type = list(names), result_column, result_type

    def __call__(self, element: Any, record: Any) -> dict[str, Any]:
        if not isinstance(element, dict):
            raise EngineError(f"an input row is not a JSON object: {element!r:.200}")
        if self.result_type == "scores" and record is not None:
            record = list(record.items())
        row = {name: element.get(name) for name in self.names}
        row[self.result_column] = record
        return row


def _split_labels(element: Any, field: str) -> Any:
    if isinstance(element, dict) and isinstance(element.get(field), str):
        return {**element, field: [x.strip() for x in element[field].split(",") if x.strip()]}
    return element


def beam_counter(result: Any, name: str) -> int | None:
    from apache_beam.metrics.metric import MetricsFilter

    try:
        counters = result.metrics().query(MetricsFilter().with_name(name))["counters"]
    except Exception:  # not every runner reports metrics
        return None
    return sum(c.committed or 0 for c in counters) if counters else 0


def check_model_early(job: Job, *, local: bool) -> None:
    """On a local master or runner, fetch the model here, so a bad model fails with a clear message."""
    if local:
        from gliclass_pipelines.loading import ModelSource

        ModelSource.parse(job.config.model).fetch()


def short_error(exc: BaseException) -> str:
    """The last 'SomethingError: message' line of an engine's error (Spark and Beam wrap tracebacks)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    text = named[-1] if named else (lines[-1] if lines else type(exc).__name__)
    return text if len(text) < 2000 else text[:2000] + "..."


def stats_from_output(job: Job, directory: Path) -> Summary:
    """Rows, null inputs and failed rows, counted in the written parts (for engines that run elsewhere)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    summary = Summary(engine=job.engine, output=str(job.output), model_load_seconds=None)
    for path in part_files(directory):
        handle = pq.ParquetFile(path)
        for batch in handle.iter_batches(columns=[job.text_column, job.result_column]):
            text, result = batch.column(0), batch.column(1)
            blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text.cast("string")), ""), True)
            summary.rows += batch.num_rows
            summary.null_inputs += pc.sum(blank).as_py() or 0
            summary.failed += pc.sum(pc.and_(pc.invert(blank), pc.is_null(result))).as_py() or 0
    return summary


# -------------------------------------------------------------------------------------------------------
# make-test-model


def make_test_model_command(args: argparse.Namespace) -> int:
    from gliclass_pipelines.testing import make_tiny_checkpoint

    path = make_tiny_checkpoint(
        args.dir, backbone=args.backbone, architecture=args.architecture, seed=args.seed
    )
    print(f"gliclass-pipelines: wrote a tiny random GLiClass checkpoint to {path}")
    print("  its scores are random: use it to test pipelines offline, not to classify")
    print(f"  try it: GLICLASS_MODEL={path} make demo   or   --model {path}")
    return EXIT_OK


ENGINE_RUNNERS: dict[str, Callable[[Job, Path], Summary]] = {
    "local": run_local,
    "spark": run_spark,
    "beam": run_beam,
}

if __name__ == "__main__":
    sys.exit(main())
