"""Beam streaming with windows: classify a timestamped stream, count the top labels per minute.

    .venv/bin/python examples/beam_streaming.py        # GLICLASS_MODEL picks the model

A TestStream stands in for Pub/Sub or Kafka: one package description every 15 seconds of event time, the
watermark advancing as it goes. Elements go into one-minute fixed windows; ClassifyText batches them
across bundles (``max_batch_duration_secs``), and each window prints how often each label came top.
It runs on the BundleBasedDirectRunner, which runs TestStream in streaming mode without any download.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import FixedWindows, TimestampedValue

from gliclass_pipelines.beam import ClassifyText

MODEL = os.environ.get("GLICLASS_MODEL") or "knowledgator/gliclass-edge-v3.0"
DATA = Path(__file__).resolve().parent / "data" / "sample.jsonl"
LABELS = ["games", "science", "multimedia", "networking", "security", "developer tools"]
SECONDS_APART = 15


def event_stream(rows: list[dict]) -> TestStream:
    stream = TestStream()
    for i, row in enumerate(rows):
        stream = stream.add_elements([TimestampedValue(row, i * SECONDS_APART)])
        stream = stream.advance_watermark_to(i * SECONDS_APART)
    return stream.advance_watermark_to_infinity()


def top_label(result) -> str:
    return result.inference["label"] if result.inference else "(none)"


class FormatWindow(beam.DoFn):
    def process(self, label_count, window=beam.DoFn.WindowParam):
        label, count = label_count
        start, end = (t.to_utc_datetime().strftime("%H:%M:%S") for t in (window.start, window.end))
        yield f"window {start}-{end}  {label}: {count}"


def main() -> None:
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    options = PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming"])
    with beam.Pipeline(options=options) as pipeline:
        classified = (
            pipeline
            | "Events" >> event_stream(rows)
            | "Minutes" >> beam.WindowInto(FixedWindows(60))
            | "Classify"
            >> ClassifyText(
                MODEL, LABELS, output="top", labels_field=None, max_batch_size=8, max_batch_duration_secs=1
            )
        )
        _ = (
            classified.results
            | "Top" >> beam.Map(lambda r: (top_label(r), 1))
            | "Count" >> beam.CombinePerKey(sum)
            | "Format" >> beam.ParDo(FormatWindow())
            | "Print" >> beam.Map(print)
        )


if __name__ == "__main__":
    main()
