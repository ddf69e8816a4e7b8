"""The ``gliclass-pipelines`` command, for scheduled jobs: classify a file into Parquet, make a test model.

``classify`` reads Parquet, JSONL or CSV, adds one result column (the Spark UDF's schema) and writes a
directory of Parquet part files. The directory appears only when the job is done: parts go to a
temporary directory beside the output, ``_SUCCESS`` (a JSON summary) is written last, and the
temporary directory is renamed into place. A killed run leaves no output that looks complete.

Exit codes: 0 done (or skipped), 1 the job failed, 2 bad arguments or configuration (or the output
exists under ``--mode error``), 3 the model could not be loaded, 130/143 interrupted.

Every message goes through :func:`gliclass_pipelines._common.redaction.shorten`: no URI secret, no echo of a
huge argument.

The modules: ``args`` (the parser and the Job it builds), ``inputs`` (readers), ``output`` (atomic
output), ``ownership`` (what may be replaced), ``progress``, ``summary``, ``job`` (running one job), and
one module per runner: ``run_local``, ``run_spark``, ``run_beam``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.cli.args import build_parser as _build_parser
from gliclass_pipelines.cli.args import job_from_args
from gliclass_pipelines.cli.job import run_job
from gliclass_pipelines.cli.progress import Progress
from gliclass_pipelines.errors import ConfigError, GLiClassPipelinesError, ModelLoadError
from gliclass_pipelines.io.interrupts import Terminated, raise_terminated
from gliclass_pipelines.io.output import (
    SUCCESS,
    OutputExistsError,
    part_files,
    should_skip,
    tidy_beside,
)

__all__ = ["EXIT_FAILED", "EXIT_MODEL", "EXIT_OK", "EXIT_USAGE", "SUCCESS", "Progress", "main", "part_files"]

logger = logging.getLogger("gliclass_pipelines.cli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MODEL = 0, 1, 2, 3
MAX_MESSAGE = 4000  # characters of one error message


def build_parser() -> argparse.ArgumentParser:
    return _build_parser(classify_command, make_test_model_command)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: run a command, turn known errors into a message and an exit code."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, raise_terminated) if in_main_thread else None
    try:
        return args.func(args)
    except OutputExistsError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ConfigError as exc:
        return _fail(f"invalid configuration: {exc}", EXIT_USAGE)
    except ModelLoadError as exc:
        return _fail(str(exc), EXIT_MODEL)
    except KeyboardInterrupt as exc:
        return _fail(f"interrupted; {_state(exc)}", 130)
    except Terminated as exc:
        return _fail(f"terminated; {_state(exc)}", 143)
    except (GLiClassPipelinesError, OSError, ValueError, RuntimeError) as exc:
        logger.debug("job failed", exc_info=True)
        return _fail(f"job failed: {type(exc).__name__}: {exc}; {_state(exc)}", EXIT_FAILED)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _state(exc: BaseException) -> str:
    """What the run left at the output (run_job's note), or that nothing was written."""
    return "; ".join(getattr(exc, "__notes__", ())) or "no output was written"


def _fail(message: str, code: int) -> int:
    print(f"gliclass-pipelines: error: {shorten(message, MAX_MESSAGE)}", file=sys.stderr)
    return code


def _configure_logging(verbose: bool) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "info" if verbose else "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    logging.basicConfig(format="gliclass-pipelines: %(levelname)s %(name)s: %(message)s")
    logging.getLogger("gliclass_pipelines").setLevel(logging.INFO if verbose else logging.WARNING)
    # per-chunk row indices mean little here; the CLI names failed rows by their global row and id
    logging.getLogger("gliclass_pipelines.core.config").setLevel(logging.ERROR)


def classify_command(args: argparse.Namespace) -> int:
    job = job_from_args(args)
    tidy_beside(job.output)
    if job.output_format == "parquet" and should_skip(job.output, job.mode):
        print(f"gliclass-pipelines: {job.output} is complete ({SUCCESS} present); skipped")
        return EXIT_OK
    summary = run_job(job)
    print("\n".join(summary.lines()))
    return EXIT_OK


def make_test_model_command(args: argparse.Namespace) -> int:
    from gliclass_pipelines.testing.checkpoints import make_tiny_checkpoint

    root = Path(args.dir)
    before = {root, *root.rglob("*")} if root.exists() else set()
    path = make_tiny_checkpoint(root, backbone=args.backbone, architecture=args.architecture, seed=args.seed)
    for written in {root, *root.rglob("*")} - before:  # executors may run as another user; ours only
        if not written.is_symlink():
            written.chmod(0o755 if written.is_dir() else 0o644)
    print(f"gliclass-pipelines: wrote a tiny random GLiClass checkpoint to {path}")
    print("  its scores are random: use it to test pipelines offline, not to classify")
    print(f"  try it: GLICLASS_MODEL={path} make demo   or   --model {path}")
    return EXIT_OK
