"""Day-2 incremental run vs a full run, through the CLI's local runner, on one input table.

Builds an N-row JSONL table (the Debian and PyPI fixtures repeated with distinct ids), classifies it in
full (day 1, which also writes the state), then a day-2 input with 1% new and 0.5% changed rows with
--incremental. Prints the day-2 / full time ratio and the load average before and after; writes
benchmarks/results/incremental.json and .md. Usage: python benchmarks/bench_incremental.py [ROWS]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gliclass_pipelines.cli import main  # noqa: E402
from gliclass_pipelines.testing import make_tiny_checkpoint  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def corpus() -> list[str]:
    texts = []
    for name in ("debian_packages.jsonl", "pypi_summaries.jsonl"):
        with open(ROOT / "tests" / "data" / name, encoding="utf-8") as handle:
            texts += [json.loads(line)["text"] for line in handle if line.strip()]
    return texts


def write_inputs(folder: Path, rows: int) -> tuple[Path, Path]:
    texts = corpus()
    day1, day2 = folder / "day1.jsonl", folder / "day2.jsonl"
    changed = set(range(0, rows, 200))  # 0.5%
    with open(day1, "w", encoding="utf-8") as one, open(day2, "w", encoding="utf-8") as two:
        for i in range(rows):
            text = texts[i % len(texts)]
            one.write(json.dumps({"id": i, "text": text}) + "\n")
            two.write(json.dumps({"id": i, "text": text + " (updated)" if i in changed else text}) + "\n")
        for i in range(rows, rows + rows // 100):  # 1% new
            two.write(json.dumps({"id": i, "text": texts[i % len(texts)]}) + "\n")
    return day1, day2


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    code = main(argv)
    if code != 0:
        raise SystemExit(f"run failed ({code}): {argv}")
    return time.perf_counter() - started


def main_bench(rows: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="bench-incremental-"))
    model = make_tiny_checkpoint(folder / "model")
    day1, day2 = write_inputs(folder, rows)
    common = ["--model", str(model), "--labels", "software,game,library,network,science", "--id-column", "id"]
    common += ["--progress", "none", "--num-threads", "2", "--incremental", "--state", str(folder / "state")]
    load_before = os.getloadavg()
    full = timed(["classify", "--input", str(day1), "--output", str(folder / "out1"), *common])
    day_two = timed(["classify", "--input", str(day2), "--output", str(folder / "out2"), *common])
    summary = json.loads((folder / "out2" / "_SUCCESS").read_text())
    record = {
        "rows_day1": rows,
        "rows_day2": rows + rows // 100,
        "full_seconds": round(full, 2),
        "day2_seconds": round(day_two, 2),
        "ratio_day2_over_full": round(day_two / full, 4),
        "day2_classified": summary["rows"],
        "day2_counts": summary["incremental"],
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cores": os.cpu_count(),
    }
    return record


if __name__ == "__main__":
    result = main_bench(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "incremental.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [f"| {k} | {v} |" for k, v in result.items()]
    (RESULTS / "incremental.md").write_text("| measure | value |\n|---|---|\n" + "\n".join(rows) + "\n")
