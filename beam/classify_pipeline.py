"""Classify JSON Lines (or plain text lines) with a GLiClass model on any Beam runner.

    python beam/classify_pipeline.py --input 'gs://bucket/in/*.jsonl' --output gs://bucket/out/results \
        --labels 'sports,politics,science' --model knowledgator/gliclass-edge-v3.0 \
        --runner DataflowRunner ...   # any standard PipelineOptions

Each input line is a JSON object with a text field (``--text_field``) and, optionally, its own labels
(``--labels_field``), or a plain text line with ``--input_format text``. Each output line is the input
record with the predictions added under ``--result_field``. Lines that cannot be parsed or classified go
to ``--dead_letter_output`` (by default ``<output>-dead-letters``) with a reason.

``--labels`` is a comma-separated list, or a YAML / JSON / text file read when the pipeline is built.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions

from gliclass_pipelines._common.checks import split_labels
from gliclass_pipelines.beam import DEAD_LETTERS, ClassifyText, dead_letter
from gliclass_pipelines.taxonomy import Taxonomy


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--input", required=True, help="file pattern of the input lines")
    parser.add_argument("--output", required=True, help="output prefix; writes <output>-SSSSS-of-NNNNN.jsonl")
    parser.add_argument("--labels", help="comma-separated labels, or a YAML/JSON/text taxonomy file")
    parser.add_argument("--model", required=True, help="Hub id[@revision], local directory or remote URI")
    parser.add_argument("--input_format", choices=("jsonl", "text"), default="jsonl")
    parser.add_argument("--text_field", default="text")
    parser.add_argument("--labels_field", default=None, help="per-record labels field, if any")
    parser.add_argument("--prompt_field", default=None, help="per-record task prompt field, if any")
    parser.add_argument("--threshold_field", default=None, help="per-record threshold field, if any")
    parser.add_argument("--result_field", default="predictions")
    parser.add_argument("--dead_letter_output", default=None)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--single_label", action="store_true", help="softmax and one label per text")
    parser.add_argument("--output_kind", choices=("labels", "top", "scores"), default="labels")
    parser.add_argument("--device", default="auto", help="auto (resolved on the worker), cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max_length", type=int, default=None)
    parser.add_argument("--num_threads", type=int, default=None, help="torch intra-op threads per process")
    parser.add_argument("--max_batch_tokens", type=int, default=None)
    parser.add_argument("--min_batch_tokens", type=int, default=None, help="lower: Beam's adaptive sizing")
    parser.add_argument(
        "--max_batch_duration_secs", type=float, default=None, help="streaming: buffer across bundles"
    )
    parser.add_argument("--min_batch_size", type=int, default=None, help="elements (with a duration)")
    parser.add_argument("--max_batch_size", type=int, default=None, help="elements (with a duration)")
    parser.add_argument("--large_model", action="store_true", help="one model per machine, shared")
    parser.add_argument("--model_copies", type=int, default=None, help="k shared models per machine")
    parser.add_argument("--num_shards", type=int, default=0, help="output shards (0: the runner decides)")
    return parser.parse_known_args(argv)


def read_labels(value: str | None) -> Any:
    if not value:
        return None
    if os.path.isfile(value):
        return Taxonomy.from_file(value)
    return split_labels(value)


class ParseLine(beam.DoFn):
    """A JSON object per line (or the line itself as text); unparseable lines go to the dead letters."""

    def __init__(self, input_format: str, text_field: str) -> None:
        self.input_format, self.text_field = input_format, text_field

    def process(self, line: str) -> Iterable[Any]:
        if self.input_format == "text":
            yield {self.text_field: line}
            return
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead_letter(line, f"invalid JSON: {exc}", "parse"))
            return
        if not isinstance(record, dict):
            reason = f"a line must be a JSON object, got {type(record).__name__}"
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, dead_letter(line, reason, "parse"))
            return
        yield record


def to_json(result: Any, result_field: str) -> str:
    return json.dumps({**result.example, result_field: result.inference}, ensure_ascii=False)


def build(pipeline: beam.Pipeline, args: argparse.Namespace) -> None:
    classify = ClassifyText(
        args.model,
        read_labels(args.labels),
        threshold=args.threshold,
        multi_label=not args.single_label,
        output=args.output_kind,
        device=args.device,
        dtype=args.dtype,
        max_length=args.max_length,
        num_threads=args.num_threads,
        text_field=args.text_field,
        labels_field=args.labels_field,
        prompt_field=args.prompt_field,
        threshold_field=args.threshold_field,
        max_batch_tokens=args.max_batch_tokens,
        min_batch_tokens=args.min_batch_tokens,
        max_batch_duration_secs=args.max_batch_duration_secs,
        min_batch_size=args.min_batch_size,
        max_batch_size=args.max_batch_size,
        large_model=args.large_model,
        model_copies=args.model_copies,
    )
    parsed = (
        pipeline
        | "Read" >> beam.io.ReadFromText(args.input)
        | "Parse"
        >> beam.ParDo(ParseLine(args.input_format, args.text_field)).with_outputs(
            DEAD_LETTERS, main="records"
        )
    )
    classified = parsed.records | "Classify" >> classify
    _ = (
        classified.results
        | "ToJson" >> beam.Map(to_json, args.result_field)
        | "Write" >> beam.io.WriteToText(args.output, file_name_suffix=".jsonl", num_shards=args.num_shards)
    )
    _ = (
        (parsed[DEAD_LETTERS], classified.dead_letters)
        | "AllDeadLetters" >> beam.Flatten()
        | "DeadToJson" >> beam.Map(json.dumps, default=repr, ensure_ascii=False)
        | "WriteDeadLetters"
        >> beam.io.WriteToText(
            args.dead_letter_output or f"{args.output}-dead-letters",
            file_name_suffix=".jsonl",
            num_shards=args.num_shards,
        )
    )


def main(argv: Sequence[str] | None = None) -> Any:
    args, beam_args = parse_args(argv)
    options = PipelineOptions(beam_args)
    options.view_as(SetupOptions).save_main_session = False
    pipeline = beam.Pipeline(options=options)
    build(pipeline, args)
    result = pipeline.run()
    result.wait_until_finish()
    return result


if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    main()
