"""The local runner: read chunks, classify them in this process, write ordered part files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.checks import split_labels
from gliclass_pipelines.cli.progress import Progress
from gliclass_pipelines.cli.summary import Summary
from gliclass_pipelines.core.results import labels_from_arrow
from gliclass_pipelines.io.incremental import Tracker
from gliclass_pipelines.io.output import PartWriter
from gliclass_pipelines.io.provenance import add_column, with_provenance
from gliclass_pipelines.io.readers import Chunk

logger = logging.getLogger(__name__)
SHOWN_PROBLEMS = 20  # bad records logged one by one; the summary counts them all


def run(job: Any, temp: Path, summary: Summary) -> None:
    import pyarrow as pa

    from gliclass_pipelines.core.results import arrow_type

    classifier = job.config.classifier()
    summary.add(classifier.load_report.take())  # none when this process had loaded it already
    schema = job.source.schema
    if job.text_column not in schema.names:  # an empty JSONL file has no columns at all
        schema = pa.schema([pa.field(job.text_column, pa.string())])
    result_field = pa.field(job.result_column, arrow_type(job.output_kind))
    prov = summary.provenance
    out_schema = with_provenance(schema.append(result_field), prov, job.provenance_column)
    if job.incremental:
        columns = (job.labels_column, job.prompt_column, job.threshold_column)
        summary.tracker = Tracker(job.previous, job.id_column, job.text_column, *columns)
    total = job.source.total_rows
    with (
        PartWriter(temp, out_schema, job.rows_per_file) as writer,
        Progress(total, job.progress, job.log_every, started=summary.started) as progress,
    ):
        for chunk in job.source.chunks(job.chunk_rows):
            read = chunk.table.num_rows
            picked, keys = summary.tracker.select(chunk) if job.incremental else (chunk, None)
            table = classify_chunk(job, picked, classifier, summary, result_field)
            if job.incremental:
                summary.tracker.record(keys, failed_rows(table, job))
            writer.write(add_column(table, job.provenance_column, prov["fingerprint"]))
            progress.update(read, chunk.done)
    if summary.bad_records > SHOWN_PROBLEMS:
        logger.warning("%d records could not be read in full in all", summary.bad_records)


def failed_rows(table: Any, job: Any) -> Any:
    """Rows with a null result whose text was there (numpy booleans)."""
    import pyarrow.compute as pc

    text = table.column(job.text_column).cast("string")
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(text), ""), True)
    failed = pc.and_(pc.invert(blank), pc.is_null(table.column(job.result_column)))
    return failed.to_numpy(zero_copy_only=False)


def classify_chunk(job: Any, chunk: Chunk, classifier: Any, summary: Summary, result_field: Any) -> Any:
    """The chunk with its result column; rows whose text could not be read get a null result (failed)."""
    from gliclass_pipelines.core.outcomes import RowOutcome, RunStats, log_failed
    from gliclass_pipelines.core.results import to_arrow

    table = chunk.table
    lost = {i for i, problem in chunk.problems.items() if problem.loses(job.text_column)}
    keep = [i for i in range(table.num_rows) if i not in lost]
    texts = table.column(job.text_column).to_pylist()
    cells = _row_cells(job, table)
    records: list[Any] = [None] * table.num_rows
    outcomes = [RowOutcome.ok()] * table.num_rows
    stats = RunStats()
    if keep:
        kept = {name: None if cell is None else [cell[i] for i in keep] for name, cell in cells.items()}
        shaped, out = job.config.classify([texts[i] for i in keep], **kept, classifier=classifier)
        for j, i in enumerate(keep):
            records[i], outcomes[i] = shaped[j], out.outcomes[j]
        stats.add(out.stats)
    ids = table.column(job.id_column).to_pylist() if job.id_column else None
    log_failed(outcomes, offset=summary.rows, ids=ids)  # the engine's failures; bad records below
    for i in sorted(lost):
        stats.count(RowOutcome.failed(f"unreadable record: {chunk.problems[i]}", "unreadable"))
    _log_problems(chunk, summary.bad_records, lost)
    summary.add(stats)
    summary.bad_records += len(chunk.problems)
    return table.append_column(result_field, to_arrow(records, job.output_kind))


def _log_problems(chunk: Chunk, seen: int, lost: set[int]) -> None:
    for i, problem in sorted(chunk.problems.items())[: max(SHOWN_PROBLEMS - seen, 0)]:
        effect = "its result is null" if i in lost else f"{', '.join(problem.columns or ())} set to null"
        logger.warning("%s; %s", problem, effect)


def _row_cells(job: Any, table: Any) -> dict[str, list[Any] | None]:
    """The chunk's per-row labels, prompts and thresholds, by ClassifyConfig.classify's names."""
    labels = None
    if job.labels_column is not None:
        values = labels_from_arrow(table.column(job.labels_column))
        labels = [split_labels(v) if isinstance(v, str) else v for v in values]
    columns = {"row_prompts": job.prompt_column, "row_thresholds": job.threshold_column}
    cells = {key: None if name is None else table.column(name).to_pylist() for key, name in columns.items()}
    return {"row_labels": labels, **cells}
