"""int8 on CPU: ONNX Runtime dynamic quantization (what `precision="int8"` ships) against torchao's int8
dynamic quantization, our float32 Classifier and the reference pipeline at its default batch.

    .venv/bin/python benchmarks/bench_int8.py                          # edge, 8 labels, 1 and 2 threads
    .venv/bin/python benchmarks/bench_int8.py --labels 1,8,32,128 --threads 1 --name int8-labels
    .venv/bin/python benchmarks/bench_int8.py --shapes base --labels 8 --texts 8
    .venv/bin/python benchmarks/bench_int8.py --quality-model DIR --threads 1    # Debtags micro-F1

Every contender classifies the same texts through a Classifier (the reference through its own
pipeline), alternately within one run (round-robin, the first contender rotating each round; medians).
Random weights with the published shapes (common.py). Accuracy: every (text, label) score against
float32's, and the batch dependence: each text's scores alone against its scores among the others.
Results: benchmarks/results/<name>.json and .md. With --quality-model, a trained Debtags GLiClass is
scored on bench_quality.py's validation and test splits in float32 and int8: micro-F1 at 0.5 and
calibrated on the validation split, and the score differences (<name>-quality.json and .md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import run  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_TEXTS = {"edge": {1: 48, 8: 64, 32: 24, 128: 12}, "base": {1: 8, 8: 8, 32: 4, 128: 2}}
ALONE_TEXTS = 8  # texts whose scores alone are compared with their scores in the batch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="edge")
    parser.add_argument("--labels", default="8")
    parser.add_argument("--threads", default="1,2", help="torch and ONNX Runtime threads, comma list")
    parser.add_argument("--texts", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--corpus", default="debian", choices=sorted(common.CORPORA))
    parser.add_argument("--contenders", default=None, help="names separated by ';' (default: all)")
    parser.add_argument("--name", default="int8")
    parser.add_argument(
        "--quality-model", type=Path, default=None, help="a trained Debtags GLiClass: F1 float32 vs int8"
    )
    parser.add_argument("--quality-rows", type=int, default=None, help="first N rows per split (smoke runs)")
    args = parser.parse_args(argv)
    args.shape_names = [s for s in args.shapes.split(",") if s]
    args.label_counts = [int(x) for x in args.labels.split(",") if x]
    args.thread_counts = [int(x) for x in args.threads.split(",") if x]
    return args


# ----------------------------------------------------------------------------------------------------
# Contenders: each a Classifier over the same checkpoint, or the reference pipeline


def classifier_with(path: Path, convert: Callable[[Any], Any] | None, max_length: int | None = None) -> Any:
    """A Classifier on a fresh float32 copy of the checkpoint, its model passed through `convert`."""
    from gliclass_pipelines.core.classifier import Classifier
    from gliclass_pipelines.model.sources import load_checkpoint

    model, tokenizer, label_tokenizer = load_checkpoint(path, str(path))
    model.eval()
    if convert is not None:
        model = convert(model) or model
    return Classifier(
        model,
        tokenizer,
        source=str(path),
        device="cpu",
        dtype="float32",
        label_tokenizer=label_tokenizer,
        max_length=max_length,
    )


def onnx_int8(threads: int, keep: str) -> Callable[[Any], Any]:
    from gliclass_pipelines.model.int8 import quantize

    return lambda model: quantize(model, threads=threads, keep_float32=keep)


def torchao_int8(model: Any) -> Any:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(model.model.encoder_model, Int8DynamicActivationInt8WeightConfig())
    return model


def torch_ao_dynamic(model: Any) -> Any:
    """The deprecated torch.ao.quantization.quantize_dynamic: a reference point only."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inner = model.model
        inner.encoder_model = torch.ao.quantization.quantize_dynamic(
            inner.encoder_model, {torch.nn.Linear}, dtype=torch.qint8
        )
    return model


def builders(threads: int) -> dict[str, Callable[[Any], Any] | None]:
    from gliclass_pipelines.model.int8 import KEEP_FLOAT32

    return {
        "float32": None,
        "int8 (onnxruntime, FFN out fp32)": onnx_int8(threads, KEEP_FLOAT32),
        "int8 (onnxruntime, all matmuls)": onnx_int8(threads, "none"),
        "onnxruntime float32": onnx_int8(threads, "all"),  # the same graph, every MatMul left float32
        "int8 (torchao)": torchao_int8,
        "int8 (torch.ao, deprecated)": torch_ao_dynamic,
    }


def build(path: Path, threads: int, names: list[str] | None) -> tuple[dict[str, Any], dict[str, float]]:
    """The Classifiers and the seconds each took to build (load + convert)."""
    import torch

    torch.set_num_threads(threads)
    made, seconds = {}, {}
    for name, convert in builders(threads).items():
        if names and name not in names and name != "float32":
            continue
        seconds[name], made[name] = common.timed(lambda c=convert: classifier_with(path, c))
        print(f"built {name} in {seconds[name]:.1f}s", flush=True)
    return made, seconds


def reference(path: Path) -> Any:
    from gliclass import GLiClassModel, ZeroShotClassificationPipeline
    from transformers import AutoTokenizer

    model = GLiClassModel.from_pretrained(str(path), trust_remote_code=False).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    return ZeroShotClassificationPipeline(model, tokenizer, device="cpu", progress_bar=False)


# ----------------------------------------------------------------------------------------------------
# Accuracy


def scores(clf: Any, texts: list[str], labels: list[str]) -> Any:
    """A texts x labels array of scores (labels in the given order)."""
    import numpy as np

    results = clf.run(texts, labels, return_all=True).results
    index = {label: j for j, label in enumerate(labels)}
    out = np.zeros((len(texts), len(labels)))
    for i, row in enumerate(results):
        for item in row:
            out[i, index[item["label"]]] = item["score"]
    return out


def distribution(diff: Any) -> dict[str, float]:
    import numpy as np

    flat = np.abs(diff).ravel()
    return {"median": float(np.median(flat)), "p99": float(np.quantile(flat, 0.99)), "max": float(flat.max())}


def accuracy(made: dict[str, Any], texts: list[str], labels: list[str]) -> dict[str, dict[str, Any]]:
    """Score differences to float32, and each text alone against among the others (batch dependence)."""
    import numpy as np

    base = scores(made["float32"], texts, labels)
    out = {}
    for name, clf in made.items():
        together = scores(clf, texts, labels)
        alone = np.stack([scores(clf, [t], labels)[0] for t in texts[:ALONE_TEXTS]])
        out[name] = {
            "vs_float32": distribution(together - base),
            "batch_dependence_max": float(np.abs(alone - together[:ALONE_TEXTS]).max()),
            "top1_agreement": float((together.argmax(1) == base.argmax(1)).mean()),
        }
    return out


# ----------------------------------------------------------------------------------------------------
# One cell: a shape, a label count, a thread count


def measure(made: dict[str, Any], ref: Any, texts: list[str], labels: list[str], args: Any) -> dict:
    entries = [run.Contender("reference b8", lambda t: ref(t, labels), texts)]
    entries += [run.Contender(n, lambda t, c=c: c.run(t, labels), texts) for n, c in made.items()]
    load_start = os.getloadavg()
    run.alternate(entries, args.rounds)
    rates = {c.name: c.texts_per_s() for c in entries}
    cpu_rates = {c.name: c.texts_per_cpu_s() for c in entries}
    return {
        "labels": len(labels),
        "texts": len(texts),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "texts_per_s": rates,
        "texts_per_cpu_s": cpu_rates,
        "seconds": {c.name: c.seconds for c in entries},
        "cpu_seconds": {c.name: c.cpu_seconds for c in entries},
        "vs_reference": {k: v / rates["reference b8"] for k, v in rates.items()},
        "vs_float32": {k: v / rates["float32"] for k, v in rates.items()},
        "cpu_vs_reference": {k: v / cpu_rates["reference b8"] for k, v in cpu_rates.items()},
        "cpu_vs_float32": {k: v / cpu_rates["float32"] for k, v in cpu_rates.items()},
        "accuracy": accuracy(made, texts, labels),
    }


def log(shape: str, threads: int, cell: dict[str, Any]) -> None:
    print(f"[{shape} {cell['labels']} labels {threads} thr] load {cell['loadavg_end'][0]:.1f}", flush=True)
    for name, rate in cell["texts_per_s"].items():
        acc = cell["accuracy"].get(name)
        diff = f"; max diff {acc['vs_float32']['max']:.3f}" if acc else ""
        print(
            f"    {name}: {rate:.2f} texts/s, {cell['vs_reference'][name]:.2f}x ref, "
            f"{cell['vs_float32'][name]:.2f}x fp32 (CPU-s: {cell['cpu_vs_reference'][name]:.2f}x ref, "
            f"{cell['cpu_vs_float32'][name]:.2f}x fp32){diff}",
            flush=True,
        )


def run_shape(name: str, args: Any) -> list[dict[str, Any]]:
    import torch

    shape = common.SHAPES[name]
    path = common.gliclass_checkpoint(shape)
    ref = reference(path)
    wanted = [s.strip() for s in args.contenders.split(";")] if args.contenders else None
    cells = []
    for threads in args.thread_counts:
        made, build_seconds = build(path, threads, wanted)
        for n in args.label_counts:
            torch.set_num_threads(threads)
            count = args.texts or DEFAULT_TEXTS[name].get(n, 8)
            texts, labels = common.sample_texts(args.corpus, count), common.label_set(n)
            cell = {"shape": name, "threads": threads, "build_s": build_seconds}
            cell.update(measure(made, ref, texts, labels, args))
            log(name, threads, cell)
            cells.append(cell)
    return cells


# ----------------------------------------------------------------------------------------------------
# Report


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"# int8 on CPU ({env['when']})",
        "",
        f"{env['cores']} cores shared with other jobs; torch {env['torch']}, "
        f"onnxruntime {env['onnxruntime']}, torchao {env['torchao']}; `{env['corpus']}` texts; "
        f"{env['rounds']} alternating rounds, median. "
        "Random weights with the published shapes. Ratios: texts/s over the reference pipeline at its "
        "default batch (8) and over our float32 Classifier, measured in the same run; per CPU-second "
        "in brackets (robust to other jobs' load). Score differences: |score - float32 score| over every "
        "(text, label). Batch dep.: the largest change of a text's scores when classified alone.",
        "",
        "| shape | labels | threads | load avg | contender | texts/s | / reference b8 | / float32 | "
        "diff median | p99 | max | batch dep. | top-1 agree | build s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in report["cells"]:
        for name, rate in cell["texts_per_s"].items():
            acc = cell["accuracy"].get(name)
            diffs = (
                f"{acc['vs_float32']['median']:.1e} | {acc['vs_float32']['p99']:.3f} | "
                f"{acc['vs_float32']['max']:.3f} | {acc['batch_dependence_max']:.1e} | "
                f"{acc['top1_agreement']:.2f}"
                if acc
                else " | | | | "
            )
            build = cell["build_s"].get(name)
            lines.append(
                f"| {cell['shape']} | {cell['labels']} | {cell['threads']} | {cell['loadavg_end'][0]:.1f} | "
                f"{name} | {rate:.2f} | {cell['vs_reference'][name]:.2f}x "
                f"({cell['cpu_vs_reference'][name]:.2f}x) | {cell['vs_float32'][name]:.2f}x "
                f"({cell['cpu_vs_float32'][name]:.2f}x) | {diffs} | "
                f"{'' if build is None else f'{build:.1f}'} |"
            )
    return "\n".join([*lines, ""])


def environment(args: Any) -> dict[str, Any]:
    import onnxruntime
    import torch
    import torchao

    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torchao": torchao.__version__,
        "corpus": args.corpus,
        "rounds": args.rounds,
        "loadavg_start": os.getloadavg(),
    }


# ----------------------------------------------------------------------------------------------------
# Accuracy on a trained model: the Debtags split and metrics of bench_quality.py


def quality(args: Any) -> dict[str, Any]:
    """Test-split micro-F1 of float32 and int8 (at 0.5, and calibrated on the validation split)."""
    import bench_quality
    import torch

    from gliclass_pipelines.model.int8 import KEEP_FLOAT32
    from gliclass_pipelines.quality.calibrate import calibrate
    from gliclass_pipelines.quality.evaluate import gold_matrix, predict_scores, score_matrix

    torch.set_num_threads(args.thread_counts[0])
    splits, labels = bench_quality.load(bench_quality.DATA)
    splits = {k: v[: args.quality_rows] for k, v in splits.items()}
    y_val = gold_matrix([r["labels"] for r in splits["val"]], labels)
    out: dict[str, Any] = {"model": str(args.quality_model), "labels": len(labels), "rows": {}}
    scores: dict[str, dict[str, Any]] = {}
    threads = args.thread_counts[0]
    variants = {
        "float32": None,
        "int8": onnx_int8(threads, KEEP_FLOAT32),
        "int8 all matmuls": onnx_int8(threads, "none"),
    }
    for name, convert in variants.items():
        clf = classifier_with(args.quality_model, convert, max_length=bench_quality.MAX_LENGTH)
        scores[name] = {}
        for split in ("val", "test"):
            texts = [r["text"] for r in splits[split]]
            started, cpu = time.perf_counter(), time.process_time()
            scores[name][split] = score_matrix(predict_scores(clf, texts, labels), labels)
            seconds = {"wall": time.perf_counter() - started, "cpu": time.process_time() - cpu}
            out.setdefault("seconds", {}).setdefault(name, {})[split] = seconds
            out["rows"][split] = len(texts)
        fitted = calibrate(scores[name]["val"], y_val, labels)
        out[name] = {
            "at_0.5": bench_quality.metrics(scores[name]["test"], splits["test"], labels, None),
            "calibrated": bench_quality.metrics(
                scores[name]["test"], splits["test"], labels, fitted.thresholds
            ),
        }
    for name in list(variants)[1:]:
        out[name]["score_diff"] = distribution(scores[name]["test"] - scores["float32"]["test"])
        out[name]["micro_f1_change"] = {
            k: out[name][k]["micro_f1"] - out["float32"][k]["micro_f1"] for k in ("at_0.5", "calibrated")
        }
    out["loadavg"] = os.getloadavg()
    for name in variants:
        print(name, json.dumps(out[name]), flush=True)
    return out


def quality_markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    lines = [
        "# int8 accuracy on a trained model (Debtags)",
        "",
        f"Model: `{result['model']}` (a GLiClass on the pretrained MiniLM encoder, fine-tuned by "
        f"bench_quality.py); {result['labels']} labels; {rows['test']} test rows, thresholds calibrated "
        f"on {rows['val']} validation rows for each precision; load average {result['loadavg'][0]:.1f}. "
        "Score differences: |int8 score - float32 score| over every (test row, label).",
        "",
        "| precision | micro-F1 at 0.5 | change | micro-F1 calibrated | change | diff median | p99 | max "
        "| test rows/CPU-s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("float32", "int8", "int8 all matmuls"):
        r = result[name]
        change = r.get("micro_f1_change", {"at_0.5": 0.0, "calibrated": 0.0})
        diff = r.get("score_diff", {"median": 0.0, "p99": 0.0, "max": 0.0})
        speed = rows["test"] / result["seconds"][name]["test"]["cpu"]
        lines.append(
            f"| {name} | {r['at_0.5']['micro_f1']:.4f} | {100 * change['at_0.5']:+.2f} pt | "
            f"{r['calibrated']['micro_f1']:.4f} | {100 * change['calibrated']:+.2f} pt | "
            f"{diff['median']:.1e} | {diff['p99']:.4f} | {diff['max']:.4f} | {speed:.1f} |"
        )
    return "\n".join([*lines, ""])


def main(argv: list[str] | None = None) -> int:
    import transformers

    transformers.logging.set_verbosity_error()
    args = parse_args(argv)
    if args.quality_model:
        result = quality(args)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{args.name}-quality.json").write_text(json.dumps(result, indent=1) + "\n")
        (RESULTS / f"{args.name}-quality.md").write_text(quality_markdown(result))
        return 0
    report = {"environment": environment(args)}
    report["cells"] = [cell for shape in args.shape_names for cell in run_shape(shape, args)]
    report["environment"]["loadavg_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(report))
    print(f"wrote {RESULTS / args.name}.json, .md", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
