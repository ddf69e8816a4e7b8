"""A Beam batch pipeline: read JSON lines, classify with ClassifyText, write results and dead letters.

    .venv/bin/python examples/beam_batch.py [--output DIR] [beam options, e.g. --runner=FnApiRunner]

Results go to DIR/results-*.jsonl as ``{"id", "labels"}``; elements that could not be classified go to
DIR/dead_letters-*.jsonl with the reason. The labels come from examples/taxonomy.yaml.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from gliclass_pipelines import Taxonomy
from gliclass_pipelines.beam import ClassifyText

HERE = Path(__file__).resolve().parent
MODEL = os.environ.get("GLICLASS_MODEL") or "knowledgator/gliclass-edge-v3.0"


def to_json(result) -> str:
    return json.dumps({"id": result.example["id"], "labels": result.inference})


def run(output: str, beam_args: list[str]) -> None:
    options = PipelineOptions(beam_args or ["--runner=FnApiRunner"])
    taxonomy = Taxonomy.from_file(HERE / "taxonomy.yaml")
    with beam.Pipeline(options=options) as pipeline:
        rows = (
            pipeline
            | "Read" >> beam.io.ReadFromText(str(HERE / "data" / "sample.jsonl"))
            | "Parse" >> beam.Map(json.loads)
        )
        classified = rows | "Classify" >> ClassifyText(MODEL, taxonomy, text_field="text", labels_field=None)
        _ = (
            classified.results
            | "ResultJson" >> beam.Map(to_json)
            | "WriteResults" >> beam.io.WriteToText(f"{output}/results", file_name_suffix=".jsonl")
        )
        _ = (
            classified.dead_letters
            | "DeadJson" >> beam.Map(lambda d: json.dumps(d, default=str))
            | "WriteDead" >> beam.io.WriteToText(f"{output}/dead_letters", file_name_suffix=".jsonl")
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(HERE / "output" / "beam_batch"))
    args, beam_args = parser.parse_known_args(argv)
    run(args.output, beam_args)
    for path in sorted(Path(args.output).glob("results-*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            labels = ", ".join(f"{x['label']} {x['score']:.2f}" for x in (row["labels"] or [])[:3]) or "-"
            print(f"{row['id']:<24} {labels}")


if __name__ == "__main__":
    main()
