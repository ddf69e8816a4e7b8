"""The local runner: read chunks, classify them in this process, write ordered part files."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gliclass_pipelines.cli.inputs import count_rows, read_chunks
from gliclass_pipelines.cli.output import PartWriter
from gliclass_pipelines.cli.progress import Progress
from gliclass_pipelines.cli.summary import Summary

logger = logging.getLogger(__name__)


def run(job: Any, temp: Path) -> Summary:
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


def _row_labels(job: Any, chunk: Any) -> list[Any] | None:
    if job.labels_column is None:
        return None
    values = chunk.column(job.labels_column).to_pylist()
    return [[x.strip() for x in v.split(",") if x.strip()] if isinstance(v, str) else v for v in values]


def _warn_failed(job: Any, chunk: Any, reasons: Sequence[str | None], offset: int) -> None:
    failed = [(i, r) for i, r in enumerate(reasons) if r is not None and r not in ("null text", "blank text")]
    ids = chunk.column(job.id_column).to_pylist() if job.id_column and failed else None
    for i, reason in failed[:5]:
        where = f"row {offset + i}" + (f" (id {ids[i]!r})" if ids else "")
        logger.warning("%s has a null result: %s", where, reason)
    if len(failed) > 5:
        logger.warning("... and %d more rows with a null result in this chunk", len(failed) - 5)
