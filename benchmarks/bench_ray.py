"""Throughput of the Ray Data adapter against the in-process Classifier: same rows, model and cores.

    .venv/bin/python benchmarks/bench_ray.py                  # 1000 Debian texts, 8 labels, 2 rounds
    .venv/bin/python benchmarks/bench_ray.py --texts 400 --rounds 1

Ray runs on a local instance with 2 CPUs: classify_dataset with 2 actors of 1 CPU and 1 torch thread
each, over the texts in 2 blocks made on the driver. Ray Data starts a fresh actor pool for every
execution (each actor imports torch and loads the model), so each Ray round is timed whole and, apart,
a run on 2 texts measures that start-up; the headline ratio is the whole job's, and the ratio without
the start-up is printed beside it. The in-process contender runs Classifier.classify with 2 torch
threads (and, for context, 1). Contenders alternate, the starting one rotating each round; ratios are
of median throughputs measured in this one run. Results go to benchmarks/results/ray.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--labels", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=192)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS / "ray.json")
    return parser.parse_args(argv)


def markdown_table(per_s: dict[str, float]) -> list[str]:
    """Ratios to the 2-thread in-process run and to the faster in-process run (1 thread on a loaded box)."""
    base = per_s["in_process_2_threads"]
    best = max(base, per_s["in_process_1_thread"])
    table = ["| contender | texts/s | / in-process 2 threads | / best in-process |", "|---|---|---|---|"]
    return table + [f"| {n} | {r:.1f} | {r / base:.2f} | {r / best:.2f} |" for n, r in per_s.items()]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import pandas as pd
    import ray
    import torch

    from gliclass_pipelines import Classifier
    from gliclass_pipelines.ray_data import classify_dataset

    texts = common.sample_texts("debian", args.texts)
    labels = common.label_set(args.labels)
    model = common.adapter_model(texts, args.hidden, args.layers, "ray")
    load_before = os.getloadavg()
    clf = Classifier.load(model, device="cpu")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)

    def ray_job(rows: list[str]) -> Callable[[], int]:
        half = (len(rows) + 1) // 2
        frames = [pd.DataFrame({"text": rows[i : i + half]}) for i in range(0, len(rows), half)]

        def run() -> int:
            ds = classify_dataset(
                ray.data.from_pandas(frames), "text", model=model, labels=labels, device="cpu",
                concurrency=2, num_cpus=1, num_threads=1, batch_size=half,
            )  # fmt: skip
            return sum(len(block) for block in ray.get(ds.to_arrow_refs()))

        return run

    def in_process(threads: int) -> Callable[[], object]:
        def run() -> object:
            torch.set_num_threads(threads)
            return clf.classify(texts, labels)

        return run

    full = ray_job(texts)
    assert full() == len(texts)  # warm-up: the workers' import caches, and a check no row is lost
    contenders = {
        "in_process_2_threads": in_process(2),
        "in_process_1_thread": in_process(1),
        "ray_data": full,
    }
    contenders["ray_startup_2_texts"] = ray_job(texts[:2])
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            seconds[name].append(common.timed(contenders[name])[0])
            print(f"round {round_ + 1} {name}: {seconds[name][-1]:.2f}s", flush=True)
    ray.shutdown()

    med = {name: common.median(values) for name, values in seconds.items()}
    per_s = {
        name: len(texts) / med[name] for name in ("in_process_2_threads", "in_process_1_thread", "ray_data")
    }
    per_s["ray_data_without_startup"] = len(texts) / max(med["ray_data"] - med["ray_startup_2_texts"], 1e-9)
    base = per_s["in_process_2_threads"]
    report = {
        "what": "classify_dataset, local Ray (2 actors x 1 CPU x 1 thread) vs in-process Classifier.classify",
        "texts": len(texts),
        "labels": len(labels),
        "model": {
            "backbone": "bert",
            "hidden_size": args.hidden,
            "layers": args.layers,
            "heads": common.adapter_heads(args.hidden),
        },
        "rounds": args.rounds,
        "seconds": seconds,
        "texts_per_s": per_s,
        "ratio_ray_over_in_process": per_s["ray_data"] / base,
        "ratio_ray_without_startup_over_in_process": per_s["ray_data_without_startup"] / base,
        "ratio_ray_over_best_in_process": per_s["ray_data"] / max(base, per_s["in_process_1_thread"]),
        "ratio_ray_without_startup_over_best_in_process": per_s["ray_data_without_startup"]
        / max(base, per_s["in_process_1_thread"]),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_before": load_before,
            "load_avg_after": os.getloadavg(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "ray": ray.__version__,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown_table(per_s)
    notes = [
        f"{len(texts)} Debian texts, {len(labels)} labels, hidden {args.hidden}, {args.layers} layers, "
        f"{args.rounds} alternating rounds (medians); Ray start-up (2-text job) "
        f"{med['ray_startup_2_texts']:.1f}s; load average before {load_before[0]:.1f}, "
        f"after {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.",
    ]
    markdown = "# Ray Data adapter vs in-process Classifier\n\n" + "\n".join(table) + "\n\n" + notes[0] + "\n"
    args.out.with_suffix(".md").write_text(markdown)
    print("\n" + markdown)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
