"""The README's main job: classify the sample packages in examples/data into examples/taxonomy.yaml.

    make demo                                    # knowledgator/gliclass-edge-v3.0 from the Hub
    GLICLASS_MODEL=/path/to/checkpoint make demo  # any GLiClass checkpoint: a directory or a Hub id

It runs the ``gliclass-pipelines classify`` job (local engine) into examples/output/sample/, then prints
each text with its labels. Offline, it says how to point it at a local checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gliclass_pipelines import cli

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = "knowledgator/gliclass-edge-v3.0"
TEXT_WIDTH = 60
MAX_LABELS = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(HERE / "output" / "sample"))
    args = parser.parse_args(argv)
    model = os.environ.get("GLICLASS_MODEL") or DEFAULT_MODEL
    print(f"model: {model}  (set GLICLASS_MODEL to use another)")
    code = cli.main(
        [
            "classify",
            "--input", str(HERE / "data" / "sample.jsonl"),
            "--output", args.output,
            "--text-column", "text",
            "--id-column", "id",
            "--labels", str(HERE / "taxonomy.yaml"),
            "--model", model,
            "--mode", "overwrite",
        ]
    )  # fmt: skip
    if code == cli.EXIT_MODEL:
        print(offline_hint(), file=sys.stderr)
    if code != cli.EXIT_OK:
        return code
    print()
    print(table(read_rows(Path(args.output))))
    return 0


def offline_hint() -> str:
    script = Path(sys.executable).parent / "gliclass-pipelines"
    command = os.path.relpath(script) if script.exists() else "gliclass-pipelines"
    if command.startswith(".."):
        command = str(script)
    return (
        "\nTo run the demo without the Hub, make a tiny random checkpoint and point GLICLASS_MODEL at it\n"
        "(its labels are random; it shows the pipeline, not the model):\n\n"
        f"    {command} make-test-model /tmp/tiny-gliclass && GLICLASS_MODEL=/tmp/tiny-gliclass make demo\n\n"
        "or set GLICLASS_MODEL to a real checkpoint directory you copied here."
    )


def read_rows(output: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(output, columns=["text", "gliclass"]).to_pylist()


def table(rows: list[dict]) -> str:
    lines = [f"{'text':<{TEXT_WIDTH}} | labels", f"{'-' * TEXT_WIDTH}-+-{'-' * 40}"]
    for row in rows:
        text = shorten(row["text"] or "", TEXT_WIDTH)
        lines.append(f"{text:<{TEXT_WIDTH}} | {show_labels(row['gliclass'])}")
    return "\n".join(lines)


def shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def show_labels(labels: list[dict] | None) -> str:
    if not labels:
        return "(none over threshold)"
    shown = ", ".join(f"{x['label']} {x['score']:.2f}" for x in labels[:MAX_LABELS])
    return shown + (f" (+{len(labels) - MAX_LABELS} more)" if len(labels) > MAX_LABELS else "")


if __name__ == "__main__":
    sys.exit(main())
