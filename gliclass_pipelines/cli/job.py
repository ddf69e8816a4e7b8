"""One validated classify run, and how it is run: a runner writes into a temporary directory, then commit."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.cli.summary import Summary
from gliclass_pipelines.errors import ConfigError
from gliclass_pipelines.io.incremental import save_state
from gliclass_pipelines.io.locks import create_locked_marker, release
from gliclass_pipelines.io.output import commit, part_files, temporary_path

RUNNERS = ("local", "spark", "beam")
MODES = ("error", "overwrite", "skip-existing", "append")  # append: table formats only
DEFAULT_RESULT_COLUMN = "gliclass"  # classify_dataframe's default output_col


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
    runner: str
    config: Any  # ClassifyConfig
    source: Any = field(default=None, compare=False, repr=False)  # the opened inputs.Input
    chunk_rows: int = 1024
    rows_per_file: int = 1_000_000
    progress: str = "auto"
    log_every: float = 10.0
    runner_options: dict[str, Any] = field(default_factory=dict)
    provenance_column: str | None = None
    output_format: str = "parquet"
    overwrite_table: Path | None = None
    state: Path | None = None  # --incremental: the state folder
    prompt_column: str | None = None
    threshold_column: str | None = None
    previous: Any = field(default=None, compare=False, repr=False)  # the loaded incremental.State

    @property
    def incremental(self) -> bool:
        return self.state is not None

    @property
    def output_kind(self) -> str:
        return self.config.output


def run_job(job: Job) -> Summary:
    """Write into a temporary directory beside the output, then commit it; remove it on any failure.
    (The caller has run :func:`~gliclass_pipelines.io.output.tidy_beside` first.)

    The temporary directory's marker stays locked while this run lives (cli.locks), so another run
    never takes it for a killed run's. A failure carries a note saying what is at the output now.
    """
    summary = Summary(runner=job.runner, output=str(job.output), model=job.config.model)
    summary.provenance = job.config.provenance()
    temp = temporary_path(job.output)
    lock = None
    try:
        temp.mkdir(parents=True)
        lock = create_locked_marker(temp)
        RUN[job.runner](job, temp, summary)
        summary.seconds = time.perf_counter() - summary.started
        summary.parts = len(part_files(temp))
        state = summary.tracker.finish() if summary.tracker is not None else None
        if state is not None:
            summary.incremental = summary.tracker.counts
        if job.output_format == "parquet":
            commit(temp, job.output, job.mode, summary.to_json())
        else:
            commit_table(job, temp, summary)
        if state is not None:
            save_state(job.state, state, {"provenance": summary.provenance, "counts": summary.incremental})
        return summary
    except BaseException as exc:
        exc.add_note(output_state(job.output, committed=lock is not None and not temp.exists()))
        raise
    finally:
        if temp.exists() and not temp.is_symlink():
            shutil.rmtree(temp, ignore_errors=True)
        release(lock)


def commit_table(job: Job, temp: Path, summary: Summary) -> None:
    """Hand the finished parts to the table format's own commit."""
    import pyarrow.dataset as ds

    from gliclass_pipelines.io.tables import delta

    parts = ds.dataset([str(p) for p in part_files(temp)], format="parquet")
    record = {"provenance": summary.provenance, "summary": json.loads(summary.to_json())}
    merge_on = job.id_column if job.incremental else None
    if merge_on is not None:
        check_unique_ids(parts, merge_on)
    metrics = delta.write(
        job.output, parts.scanner().to_reader(), parts.schema, mode=job.mode, merge_on=merge_on, record=record
    )
    summary.table_metrics = {k: v for k, v in metrics.items() if k.startswith("num_")}


def check_unique_ids(parts: Any, column: str) -> None:
    """Merging by id needs one row per id in the run (else the table would keep either)."""
    import pyarrow.compute as pc

    ids = parts.to_table(columns=[column]).column(column)
    if pc.count_distinct(ids, mode="all").as_py() != len(ids):
        counts = pc.value_counts(ids)
        repeated = [c["values"] for c in counts.to_pylist() if c["counts"] > 1][:5]
        raise ConfigError(
            f"--id-column {column!r} repeats ids ({shorten(repr(repeated), 200)}); merging by id needs one "
            "row per id: nothing was written"
        )


def output_state(output: Path, committed: bool) -> str:
    """What a stopped or failed run leaves at the output, for its message."""
    if committed:
        return f"{output} holds this run's complete output (committed before it stopped)"
    if output.exists():
        return f"no output was written; {output} is unchanged"
    return "no output was written"


def _run_local(job: Job, temp: Path, summary: Summary) -> None:
    from gliclass_pipelines.cli import run_local

    run_local.run(job, temp, summary)


def _run_spark(job: Job, temp: Path, summary: Summary) -> None:
    from gliclass_pipelines.cli import run_spark

    run_spark.run(job, temp, summary)


def _run_beam(job: Job, temp: Path, summary: Summary) -> None:
    from gliclass_pipelines.cli import run_beam

    run_beam.run(job, temp, summary)


RUN = {"local": _run_local, "spark": _run_spark, "beam": _run_beam}  # each imports its engine when run
