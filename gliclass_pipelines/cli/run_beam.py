"""The Beam runner: ReadAllFromText/Parquet -> ClassifyText -> results and dead letters -> WriteToParquet."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gliclass_pipelines._common.checks import split_labels
from gliclass_pipelines._common.redaction import shorten
from gliclass_pipelines.cli.failures import RunnerError, check_model_early, short_error
from gliclass_pipelines.cli.summary import Summary, add_computed, stats_from_output, written_rows
from gliclass_pipelines.core.results import as_pairs
from gliclass_pipelines.errors import ConfigError, GLiClassPipelinesError
from gliclass_pipelines.io.readers import id_of_broken_line, ids_as_text, input_files, misfits
from gliclass_pipelines.io.readers import lines as limits
from gliclass_pipelines.io.readers.jsonl import parse_line as parse_json_line
from gliclass_pipelines.io.readers.lines import blank_lines_reason

logger = logging.getLogger(__name__)
JOB_SERVER_TIMEOUT = 30


def run(job: Any, temp: Path, summary: Summary) -> None:
    """ReadAllFromText/Parquet -> ClassifyText -> results and dead letters -> WriteToParquet(temp)."""
    import apache_beam as beam
    import pyarrow as pa
    from apache_beam.options.pipeline_options import PipelineOptions

    from gliclass_pipelines.beam.metrics import run_stats
    from gliclass_pipelines.beam.transforms import ClassifyText
    from gliclass_pipelines.core.results import arrow_type

    if job.input_format not in ("jsonl", "parquet"):
        raise ConfigError(f"--runner beam reads jsonl or parquet, not {job.input_format}")
    runner = job.runner_options["beam_runner"]
    check_model_early(job)
    schema = job.source.schema
    if job.text_column not in schema.names:
        schema = pa.schema([pa.field(job.text_column, pa.string())])
    out_schema = schema.append(pa.field(job.result_column, arrow_type(job.output_kind)))
    options = dict(job.runner_options["beam_options"])
    if "job_endpoint" in options:  # Beam waits 300 s for an unreachable job service by default
        options.setdefault("job_server_timeout", JOB_SERVER_TIMEOUT)
    flags = [f"--runner={runner}"] + [f"--{k}={v}" for k, v in options.items()]
    shape = _BeamRow(schema, job.result_column, job.output_kind, job.id_column)
    pipeline = beam.Pipeline(options=PipelineOptions(flags))
    classified = read_rows(pipeline, job) | "Classify" >> ClassifyText.from_config(
        job.config,
        text_field=job.text_column,
        labels_field=job.labels_column,
        prompt_field=job.prompt_column,
        threshold_field=job.threshold_column,
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
    result = run_pipeline(pipeline, options)
    try:
        computed = run_stats(result)
    except Exception:  # not every runner reports metrics
        stats_from_output(job, temp, summary)
        summary.truncated = None
        return
    add_computed(summary, computed, written_rows(temp))


def read_rows(pipeline: Any, job: Any) -> Any:
    """The input's rows as dicts (each row's labels split when they are 'a,b,c' text)."""
    import apache_beam as beam

    files = pipeline | "Files" >> beam.Create([str(f) for f in input_files(job.input, job.input_format)])
    if job.input_format == "jsonl":
        rows = (
            files
            | "Read" >> beam.io.ReadAllFromText()
            | "NonBlank" >> beam.FlatMap(_NonBlank())
            | "Parse" >> beam.Map(parse_line, job.id_column)
        )
    else:
        rows = files | "Read" >> beam.io.ReadAllFromParquet()
    if job.labels_column is not None:
        rows = rows | "SplitLabels" >> beam.Map(_split_labels, job.labels_column)
    return rows


def run_pipeline(pipeline: Any, options: dict[str, Any]) -> Any:
    """Run the pipeline to its end; a failure is a RunnerError saying what to do."""
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except Exception as exc:
        if isinstance(exc, GLiClassPipelinesError):
            raise
        if type(exc).__name__ == "FutureTimeoutError" and "job_endpoint" in options:
            raise RunnerError(
                f"the Beam job service at {options['job_endpoint']} did not answer within "
                f"{options['job_server_timeout']} s; start it, fix --beam-option job_endpoint=..., or wait "
                "longer with --beam-option job_server_timeout=SECONDS"
            ) from exc
        raise RunnerError(f"Beam failed: {short_error(exc)}") from exc
    return result


class _BeamRow:
    """An output row: the input's columns in schema order, then the result (maps as pairs, for Arrow)."""

    def __init__(self, schema: Any, result_column: str, output_kind: str, id_column: str | None) -> None:
        self.schema, self.result_column, self.output_kind = schema, result_column, output_kind
        self.id_column = id_column

    def __call__(self, element: Any, record: Any) -> dict[str, Any]:
        if not isinstance(element, dict):
            raise RunnerError(f"an input row is not a JSON object: {element!r:.200}")
        record = as_pairs(record, self.output_kind)
        row = ids_as_text(
            {name: element.get(name) for name in self.schema.names}, self.schema, self.id_column
        )
        bad = misfits(row, self.schema)
        if bad:  # a value of another type than its column's (a number where text was): null, as locally
            logger.warning("column(s) %s of a row do not fit their type; written as null", ", ".join(bad))
            row.update(dict.fromkeys(bad))
        row[self.result_column] = record
        return row


def parse_line(line: str, id_column: str | None) -> dict[str, Any]:
    """A JSON line as a dict, parsed as the local runner does: a line that is not a JSON object keeps only
    its id (a null result); values it cannot keep (a lone surrogate, nesting too deep) are null."""
    value, reason, _ = parse_json_line(line)
    if reason is not None:
        logger.warning("a JSON line could not be read in full (%s): %s", reason, shorten(line, 120))
    if value is not None:
        return value
    return id_of_broken_line(line.encode("utf-8", "surrogateescape"), id_column) or {}


class _NonBlank:
    """Drops blank lines, and refuses a newline bomb as the local reader does: more than
    MAX_BLANK_LINES blank lines in a row (as this worker's copy sees them, in order within a file)."""

    def __init__(self) -> None:
        self.blank = 0

    def __call__(self, line: str) -> Iterator[str]:
        if line.strip():
            self.blank = 0
            yield line
            return
        self.blank += 1
        if self.blank > limits.MAX_BLANK_LINES:
            raise ConfigError(blank_lines_reason(None, None))


def _split_labels(element: Any, field: str) -> Any:
    if isinstance(element, dict) and isinstance(element.get(field), str):
        return {**element, field: split_labels(element[field])}
    return element
