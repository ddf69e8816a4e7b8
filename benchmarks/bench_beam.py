"""Throughput of GLiClass inside Beam (FnApiRunner) against the in-process Classifier on the same texts.

    .venv/bin/python benchmarks/bench_beam.py            # ~2000 Debian texts, 8 labels, 3 rounds
    .venv/bin/python benchmarks/bench_beam.py --texts 300 --rounds 1   # a quick look

The model is a random checkpoint big enough for the forward pass to dominate (hidden 256, 4 layers).
It is loaded once, before timing: the FnApiRunner runs in this process, so its load_model() gets the
registry's model. Each round runs every contender once, in a rotating order, and the headline is the ratio
of median throughputs measured in this run. A Beam run's time is the whole pipeline, runner start-up
included; the start-up of a one-element pipeline is reported alongside.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "debian_packages.jsonl"
RESULTS = ROOT / "benchmarks" / "results" / "beam.json"
CACHE = ROOT / ".cache" / "bench-beam"
BASELINE = "Classifier (in-process)"
SHAPE = {"backbone": "bert", "hidden_size": 256, "num_layers": 4, "num_heads": 4, "seed": 3}


def read_rows(limit: int) -> list[dict[str, Any]]:
    rows = []
    with open(DATA, encoding="utf-8") as handle:
        for line in handle:
            rows.append(json.loads(line))
            if len(rows) >= limit:
                break
    return rows


def checkpoint(corpus: list[str]) -> Path:
    from gliclass_pipelines.testing.checkpoints import make_tiny_checkpoint

    path = CACHE / "-".join(f"{k}{v}" for k, v in SHAPE.items())
    if not (path / "config.json").is_file():
        make_tiny_checkpoint(path, corpus=corpus, **SHAPE)
    return path


def run_classifier(config: Any, texts: list[str]) -> int:
    records, _ = config.classify(texts)
    return len(records)


def run_beam(handler: Any, texts: list[str], transform: str) -> int:
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from gliclass_pipelines.beam.transforms import ClassifyText

    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        elements = pipeline | beam.Create(texts)
        if transform == "RunInference":
            results = elements | RunInference(handler)
        else:
            results = (elements | ClassifyText(handler.config.model, handler.config.labels)).results
        _ = results | beam.combiners.Count.Globally()
    counters = pipeline.result.metrics().query()["counters"]
    return sum(
        c.committed for c in counters if c.key.metric.namespace == "gliclass" and c.key.metric.name == "rows"
    )


def measure(contenders: dict[str, Any], rounds: int, n: int) -> tuple[dict, dict]:
    """Wall and CPU seconds (this process, all threads: the FnApiRunner runs in it) of each contender."""
    wall: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            started, started_cpu = time.perf_counter(), time.process_time()
            done = contenders[name]()
            elapsed, elapsed_cpu = time.perf_counter() - started, time.process_time() - started_cpu
            if done != n:
                raise RuntimeError(f"{name} classified {done} texts, expected {n}")
            wall[name].append(elapsed)
            cpu[name].append(elapsed_cpu)
            print(f"round {r + 1} {name:<24} {elapsed:7.2f}s wall {elapsed_cpu:7.2f}s cpu", flush=True)
    return wall, cpu


def save(path: Path, key: str, report: dict[str, Any]) -> None:
    """Keep one run per setting (texts, threads) in the results file."""
    runs = json.loads(path.read_text()).get("runs", {}) if path.is_file() else {}
    runs[key] = report
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": "beam", "runs": runs}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--labels", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    import torch

    from gliclass_pipelines.beam.transforms import GLiClassModelHandler
    from gliclass_pipelines.model.sources import load_count

    rows = read_rows(max(args.texts, 5000))
    texts = [r["text"] for r in rows[: args.texts]]
    labels = [s for s, _ in Counter(r["section"] for r in rows).most_common(args.labels)]
    path = checkpoint([r["text"] for r in rows])
    handler = GLiClassModelHandler(path, labels, num_threads=args.threads)
    config = handler.config
    started = time.perf_counter()
    clf = config.classifier()
    load_seconds = time.perf_counter() - started
    config.classify(texts[:32])  # warm-up
    loads = load_count()

    run_beam(handler, texts[:32], "RunInference")  # warm-up: Beam's own first-run costs
    started = time.perf_counter()
    run_beam(handler, texts[:1], "RunInference")
    startup_seconds = time.perf_counter() - started

    load_before = os.getloadavg()
    contenders = {
        BASELINE: lambda: run_classifier(config, texts),
        "RunInference(handler)": lambda: run_beam(handler, texts, "RunInference"),
        "ClassifyText": lambda: run_beam(handler, texts, "ClassifyText"),
    }
    wall, cpu = measure(contenders, args.rounds, len(texts))
    if load_count() != loads:
        raise RuntimeError("a Beam run loaded the model again: the timings include a model load")
    throughput = {name: len(texts) / statistics.median(ts) for name, ts in wall.items()}
    cpu_throughput = {name: len(texts) / statistics.median(ts) for name, ts in cpu.items()}
    base, cpu_base = throughput[BASELINE], cpu_throughput[BASELINE]
    ratios = {name: tps / base for name, tps in throughput.items()}
    cpu_ratios = {name: tps / cpu_base for name, tps in cpu_throughput.items()}
    report = {
        "benchmark": "beam",
        "what": "texts/s of RunInference and ClassifyText on FnApiRunner vs Classifier.classify, same texts",
        "headline": "ratio_to_classifier: median wall-clock throughput, measured alternately in this run",
        "texts": len(texts),
        "labels": labels,
        "model": {**SHAPE, "params": sum(p.numel() for p in clf.model.parameters())},
        "device": str(clf.device),
        "torch_threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "texts_per_second": throughput,
        "ratio_to_classifier": ratios,
        "texts_per_cpu_second": cpu_throughput,
        "cpu_ratio_to_classifier": cpu_ratios,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "model_load_seconds_excluded": load_seconds,
        "one_element_pipeline_seconds": startup_seconds,
        "batching": {k: v for k, v in handler.batch_elements_kwargs().items() if isinstance(v, int)},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "os": platform.platform()},
    }
    save(args.output, f"{len(texts)} texts, {report['torch_threads']} torch threads", report)
    print()
    print(f"{'contender':<26}{'texts/s':>10}{'ratio':>8}{'cpu ratio':>11}")
    for name in contenders:
        print(f"{name:<26}{throughput[name]:>10.1f}{ratios[name]:>8.2f}{cpu_ratios[name]:>11.2f}")
    print(f"one-element pipeline: {startup_seconds:.2f}s; wrote {args.output}")


if __name__ == "__main__":
    main()
