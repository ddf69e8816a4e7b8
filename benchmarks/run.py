"""Throughput of GLiClass through our Classifier against the reference pipeline, the bare forward pass on
our own batches, and a pairwise NLI cross-encoder, over label counts. One command::

    make bench                                   # .venv/bin/python benchmarks/run.py
    make bench BENCH_ARGS="--shapes edge --labels 8"
    make bench BENCH_ARGS=--sweep                # batch budgets, threads, ONNX Runtime, compile, bf16
    .venv/bin/python benchmarks/run.py --quick   # < 60 s smoke run

Contenders run alternately (round-robin, the starting contender rotates each round) on the same texts
and the same model, and the headline is the ratio of median throughputs measured in this one run.
See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
QUICK_OUT = common.CACHE / "quick"

# Texts per label count (the same texts for every contender in a cell); fewer where a pass is slow.
DEFAULT_TEXTS = {
    "edge": {1: 48, 8: 64, 32: 24, 128: 12},
    "base": {1: 4, 8: 4, 32: 3, 128: 2},
    "tiny": {1: 8, 8: 8},
}
# The cross-encoder costs one batch-1 forward pass per (text, label) pair, so it runs at most this many
# pairs per pass: a length-stratified subset of the cell's texts and, past that, the first labels only;
# its texts/s is extrapolated (pairs are independent passes, so the cost is linear in texts and labels).
CROSS_PAIRS = {"edge": 64, "base": 4, "tiny": 16}


@dataclass
class Contender:
    name: str
    run: Callable[[list[str]], Any]
    texts: list[str]
    share: float = 1.0  # the fraction of the cell's (text, label) work one pass does
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)  # matmul FLOPs per CPU-second just before each pass

    def texts_per_s(self) -> float:
        return len(self.texts) * self.share / common.median(self.seconds)

    def texts_per_cpu_s(self) -> float:
        return len(self.texts) * self.share / common.median(self.cpu_seconds)


# ----------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="edge,base", help="comma list of: " + ",".join(common.SHAPES))
    parser.add_argument("--labels", default="1,8,32,128", help="label counts, comma separated")
    parser.add_argument("--texts", type=int, default=None, help="texts per cell (default: per-shape table)")
    parser.add_argument("--corpus", default="debian", choices=sorted(common.CORPORA))
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per cell")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every contender")
    parser.add_argument("--batch-tokens", type=int, default=None, help="our batch budget (engine default)")
    parser.add_argument(
        "--also-batch-tokens",
        type=int,
        default=1024,
        help="also run ours with this budget, as a candidate CPU default (0: do not)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny model, 8 texts, 1 and 8 labels")
    parser.add_argument("--sweep", action="store_true", help="tune our batch plan and forward backends")
    parser.add_argument("--compile", action="store_true", help="sweep: also try torch.compile (slow)")
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    parser.add_argument("--name", default=None, help="results file stem (default core / core-sweep)")
    args = parser.parse_args(argv)
    args.shape_names = [s.strip() for s in args.shapes.split(",") if s.strip()]
    args.label_counts = [int(x) for x in args.labels.split(",") if x.strip()]
    if args.sweep and args.shapes == parser.get_default("shapes"):
        args.shape_names = ["edge"]
    if args.sweep and args.labels == parser.get_default("labels"):
        args.label_counts = [8, 128]
    if args.quick:
        args.shape_names, args.label_counts, args.texts, args.rounds = ["tiny"], [1, 8], 8, 1
    args.out = args.out or (QUICK_OUT if args.quick else RESULTS)
    args.name = args.name or ("core-sweep" if args.sweep else "core")
    return args


# ----------------------------------------------------------------------------------------------------
# Contenders


def load_models(shape: common.Shape, threads: int) -> dict[str, Any]:
    """Our Classifier, the model and tokenizer a reference user loads, and the cross-encoder pipeline."""
    import torch
    import transformers
    from gliclass import GLiClassModel
    from transformers import AutoTokenizer, pipeline

    from gliclass_pipelines.core.classifier import Classifier

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    path = common.gliclass_checkpoint(shape)
    nli = common.cross_encoder_checkpoint(shape)
    torch.set_num_threads(threads)
    clf = Classifier.load(path, device="cpu", num_threads=threads)
    model = GLiClassModel.from_pretrained(str(path), trust_remote_code=False).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    cross = pipeline("zero-shot-classification", model=str(nli), tokenizer=str(nli), device="cpu")
    return {"clf": clf, "model": model, "tokenizer": tokenizer, "cross": cross}


def reference_pipeline(models: dict[str, Any]) -> Any:
    from gliclass import ZeroShotClassificationPipeline

    model, tokenizer = models["model"], models["tokenizer"]
    return ZeroShotClassificationPipeline(model, tokenizer, device="cpu", progress_bar=False)


def forward_only(clf: Any, batches: list[Any]) -> None:
    """The bare reference model forward on our planned batches: no tokenizing, planning or postprocess."""
    import torch

    with torch.inference_mode():
        for b in batches:
            k = max(len(s.group.labels) for s in b.sequences)
            clf.model(input_ids=b.input_ids, attention_mask=b.attention_mask, max_num_classes=k)


def stratified(texts: list[str], n: int) -> list[str]:
    """n texts spread evenly over the length order, so their mean length tracks the whole set's."""
    if n >= len(texts):
        return list(texts)
    order = sorted(texts, key=len)
    return [order[int((i + 0.5) * len(order) / n)] for i in range(n)]


def contenders(models: dict[str, Any], shape: str, texts: list[str], labels: list[str], args: Any) -> list:
    clf, ref, cross = models["clf"], models["reference"], models["cross"]
    batches = clf.batches(texts, labels, batch_tokens=args.batch_tokens)
    pairs = CROSS_PAIRS[shape]
    subset, some = stratified(texts, max(1, pairs // len(labels))), labels[: min(len(labels), pairs)]
    also = args.also_batch_tokens
    extra = [Contender(f"ours bt{also}", lambda t: clf.run(t, labels, batch_tokens=also), texts)]
    return [
        *(extra if also and also != (args.batch_tokens or clf.default_batch_tokens) else []),
        Contender("ours", lambda t: clf.run(t, labels, batch_tokens=args.batch_tokens), texts),
        Contender("reference b8", lambda t: ref(t, labels), texts),
        Contender("reference b16", lambda t: ref(t, labels, batch_size=16), texts),
        Contender("forward-only", lambda t: forward_only(clf, batches), texts),
        Contender(
            "cross-encoder",
            lambda t: cross(t, candidate_labels=some, multi_label=True),
            subset,
            share=len(some) / len(labels),
        ),
    ]


# ----------------------------------------------------------------------------------------------------
# Measuring


def alternate(entries: list[Contender], rounds: int, threads: int | None = None) -> None:
    """Warm every contender on one text, then time `rounds` round-robin passes with a rotating start.

    With `threads`, a short matmul peak is measured before each pass: the machine's speed drifts with
    its other tenants, and MFU then divides by the peak of the same moment.
    """
    for c in entries:
        c.run(c.texts[:1])
    for r in range(rounds):
        for c in entries[r % len(entries) :] + entries[: r % len(entries)]:
            if threads:
                c.peaks.append(common.matmul_peak(threads, repeats=2)["cpu"])
            wall, cpu = common.clocked(lambda c=c: c.run(c.texts))
            c.seconds.append(wall)
            c.cpu_seconds.append(cpu)


def cell_work(clf: Any, texts: list[str], labels: list[str], batch_tokens: int | None) -> dict[str, Any]:
    """Token counts of our plan and the useful FLOPs of the cell (the same for every GLiClass contender)."""
    batches = clf.batches(texts, labels, batch_tokens=batch_tokens)
    lengths = [len(s.ids) for b in batches for s in b.sequences]
    config = clf.config.encoder_config
    params = common.encoder_matmul_params(clf.forward_pass.inner.encoder_model)
    flops = common.useful_flops(lengths, params, config.num_hidden_layers, config.hidden_size)
    return {
        "batches": len(batches),
        "real_tokens": sum(b.real_tokens for b in batches),
        "padded_tokens": sum(b.padded_tokens for b in batches),
        "useful_flops": flops,
        "sequences": len(lengths),
    }


def measure_cell(models: dict[str, Any], shape: str, texts: list[str], n_labels: int, args: Any) -> dict:
    started = time.perf_counter()
    labels = common.label_set(n_labels)
    entries = contenders(models, shape, texts, labels, args)
    alternate(entries, args.rounds, args.threads)
    work = cell_work(models["clf"], texts, labels, args.batch_tokens)
    rates = {c.name: c.texts_per_s() for c in entries}
    cpu_rates = {c.name: c.texts_per_cpu_s() for c in entries}
    cell = {
        "labels": n_labels,
        "texts": len(texts),
        "cross_encoder_texts": len(entries[-1].texts),
        "batch_tokens": args.batch_tokens or models["clf"].default_batch_tokens,
        "cross_encoder_labels": round(entries[-1].share * n_labels),
        "peak_flops_per_cpu_s": common.median([p for c in entries for p in c.peaks]),
        "texts_per_s": rates,
        "texts_per_cpu_s": cpu_rates,
        "seconds": {c.name: c.seconds for c in entries},
        "cpu_seconds": {c.name: c.cpu_seconds for c in entries},
        "padding_efficiency": work["real_tokens"] / work["padded_tokens"],
        **work,
    }
    gliclass = [k for k in rates if k != "cross-encoder"]
    cell["mfu"] = {c.name: mfu(c, work["useful_flops"]) for c in entries if c.name in gliclass}
    cell["ratios"] = ratios(rates)
    cell["cpu_ratios"] = ratios(cpu_rates)
    if len(entries) > len(NAMES):
        also = entries[0].name
        work_also = cell_work(models["clf"], texts, labels, args.also_batch_tokens)
        cell["also"] = {"name": also, "batch_tokens": args.also_batch_tokens, **work_also}
        cell["also"]["padding_efficiency"] = cell["also"]["real_tokens"] / cell["also"]["padded_tokens"]
        cell["also"]["ratios"] = ratios(rates, also)
        cell["also"]["cpu_ratios"] = ratios(cpu_rates, also)
    cell["elapsed_s"] = time.perf_counter() - started
    log_cell(shape, cell)
    return cell


def ratios(rates: dict[str, float], ours: str = "ours") -> dict[str, float]:
    return {f"{ours}/{k}": rates[ours] / v for k, v in rates.items() if k != ours}


def mfu(c: Contender, useful_flops: float) -> float:
    """Median over rounds of (useful FLOPs / CPU seconds) / (matmul FLOPs per CPU second just before)."""
    return common.median([useful_flops / cpu / peak for cpu, peak in zip(c.cpu_seconds, c.peaks)])


def log_cell(shape: str, cell: dict[str, Any]) -> None:
    rates = ", ".join(f"{k} {v:.2f}" for k, v in cell["texts_per_s"].items())
    ratios = ", ".join(f"{k} {v:.2f}x" for k, v in cell["ratios"].items())
    print(f"[{shape} {cell['labels']:>3} labels] texts/s: {rates}", flush=True)
    print(
        f"    {ratios}; padding eff {cell['padding_efficiency']:.3f}; MFU ours {cell['mfu']['ours']:.1%}"
        f" (peak {cell['peak_flops_per_cpu_s'] / 1e9:.0f} GFLOP/CPU-s); {cell['elapsed_s']:.0f}s",
        flush=True,
    )


def texts_for(shape: str, n_labels: int, args: Any) -> list[str]:
    n = args.texts or DEFAULT_TEXTS[shape].get(n_labels, min(DEFAULT_TEXTS[shape].values()))
    return common.sample_texts(args.corpus, n)


def run_shape(name: str, args: Any) -> dict[str, Any]:
    shape = common.SHAPES[name]
    models = load_models(shape, args.threads)
    models["reference"] = reference_pipeline(models)
    clf = models["clf"]
    cells = [measure_cell(models, name, texts_for(name, n, args), n, args) for n in args.label_counts]
    return {
        "shape": {**shape.__dict__, "params": sum(p.numel() for p in clf.model.parameters())},
        "encoder_matmul_params": common.encoder_matmul_params(clf.forward_pass.inner.encoder_model),
        "default_batch_tokens": clf.default_batch_tokens,
        "cells": cells,
    }


# ----------------------------------------------------------------------------------------------------
# Reporting


def environment(args: Any) -> dict[str, Any]:
    import gliclass
    import torch
    import transformers

    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)),
        "threads": args.threads,
        "loadavg_start": os.getloadavg(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gliclass": getattr(gliclass, "__version__", "?"),
        "corpus": args.corpus,
        "rounds": args.rounds,
        "batch_tokens": args.batch_tokens,
    }


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"# Core benchmark ({env['when']})",
        "",
        f"{env['cores']} cores, {env['threads']} torch threads, torch {env['torch']}, transformers "
        f"{env['transformers']}; corpus `{env['corpus']}`; {env['rounds']} alternating rounds, median; "
        f"load average {env['loadavg_start'][0]:.1f} at start, {env['loadavg_end'][0]:.1f} at end.",
        "",
    ]
    for shape in report["shapes"]:
        lines += shape_table(shape)
    lines += [
        "The cross-encoder runs at most a few dozen (text, label) pairs per pass: a length-stratified "
        "subset of each cell's texts and, at 128 labels, only the first labels (`cross n`: texts x "
        "labels run); its texts/s is extrapolated linearly, one forward pass per pair. "
        "pad eff: real / padded tokens of our batches. "
        "MFU: useful FLOPs per CPU-second / float32 matmul FLOPs per CPU-second (best of two 2048x2048 "
        "torch.mm on the same threads, measured just before each pass; median over rounds). Useful "
        "FLOPs = 2 * encoder matmul params * real tokens + 4 * layers * hidden * n^2 per sequence of n "
        "real tokens (padding, the GLiClass head, norms and softmax not counted).",
        "",
    ]
    return "\n".join(lines)


NAMES = ["ours", "reference b8", "reference b16", "forward-only", "cross-encoder"]


def shape_table(shape: dict[str, Any]) -> list[str]:
    s = shape["shape"]
    head = (
        f"## {s['name']}: {s['backbone']}, hidden {s['hidden']}, {s['layers']} layers, "
        f"{s['params'] / 1e6:.1f}M params ({shape['encoder_matmul_params'] / 1e6:.1f}M in encoder matmuls)"
    )
    cols = ["labels", "texts", "cross n", *NAMES, "ours/ref b8", "ours/ref b16", "ours/fwd", "ours/cross"]
    cols += ["pad eff", "MFU ours", "MFU fwd"]
    rows = [head, "", "texts per second (wall clock):", ""]
    rows += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    rows += [table_row(c, "texts_per_s", "ratios", mfu=True) for c in shape["cells"]]
    rows += ["", "texts per CPU-second of this process (robust when other jobs share the cores):", ""]
    rows += ["| " + " | ".join(cols[:-3]) + " |", "|" + "---|" * (len(cols) - 3)]
    rows += [table_row(c, "texts_per_cpu_s", "cpu_ratios", mfu=False) for c in shape["cells"]]
    return [*rows, "", *also_table(shape["cells"])]


def also_table(cells: list[dict[str, Any]]) -> list[str]:
    """Ours with the candidate CPU batch budget, against the same contenders in the same rounds."""
    cells = [c for c in cells if "also" in c]
    if not cells:
        return []
    name = cells[0]["also"]["name"]
    others = ["reference b8", "reference b16", "ours", "forward-only", "cross-encoder"]
    cols = ["labels", f"{name} texts/s", *[f"/ {o}" for o in others], "pad eff", "batches", "MFU"]
    budget = cells[0]["also"]["batch_tokens"]
    rows = [
        f"`{name}`: our Classifier with `batch_tokens={budget}` (wall-clock ratios; per CPU-second "
        "in the JSON). `ours` and `forward-only` use the engine's default budget.",
        "",
    ]
    rows += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for c in cells:
        a = c["also"]
        values = [str(c["labels"]), f"{c['texts_per_s'][name]:.2f}"]
        values += [f"{a['ratios'][f'{name}/{o}']:.2f}x" for o in others]
        values += [f"{a['padding_efficiency']:.3f}", str(a["batches"]), f"{c['mfu'][name]:.1%}"]
        rows.append("| " + " | ".join(values) + " |")
    return [*rows, ""]


def table_row(c: dict[str, Any], rates: str, ratios: str, mfu: bool) -> str:
    cross = f"{c['cross_encoder_texts']}x{c.get('cross_encoder_labels', c['labels'])}"
    values = [str(c["labels"]), str(c["texts"]), cross]
    values += [f"{c[rates][n]:.2f}" for n in NAMES]
    values += [f"{c[ratios][f'ours/{n}']:.2f}x" for n in NAMES[1:]]
    if mfu:
        values += [
            f"{c['padding_efficiency']:.3f}",
            f"{c['mfu']['ours']:.1%}",
            f"{c['mfu']['forward-only']:.1%}",
        ]
    return "| " + " | ".join(values) + " |"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = report["shapes"]
    fig, axes = plt.subplots(1, len(shapes), figsize=(6 * len(shapes), 4.5), squeeze=False)
    for ax, shape in zip(axes[0], shapes):
        cells = shape["cells"]
        x = [c["labels"] for c in cells]
        for name in cells[0]["texts_per_s"]:
            ax.plot(x, [c["texts_per_s"][name] for c in cells], marker="o", label=name)
        ax.set(xscale="log", yscale="log", xlabel="labels", ylabel="texts/s", title=shape["shape"]["name"])
        ax.set_xticks(x, [str(v) for v in x])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("GLiClass throughput against label count (CPU, random weights, published shapes)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(report: dict[str, Any], args: Any, text: str, with_plot: bool = True) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / args.name
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(text)
    if with_plot:
        plot(report, stem.with_suffix(".png"))
    print(f"wrote {stem}.json, .md" + (", .png" if with_plot else ""), flush=True)


# ----------------------------------------------------------------------------------------------------
# Sweep: our batch plan and threads, then forward backends on the same batches


def capped_plan(clf: Any, min_efficiency: float) -> Callable[..., list[Any]]:
    """A planner prototype: the engine's sort and token budget, and a batch also closes when adding the
    next (longer) sequence would push its padding above 1 - min_efficiency."""

    def plan(sequences: list[Any], batch_tokens: int | None = None, max_batch_rows: int = 256) -> list[Any]:
        budget = batch_tokens or clf.default_batch_tokens
        groups: list[list[Any]] = [[]]
        real = 0
        for s in sorted(sequences, key=lambda s: len(s.ids)):
            rows, width = len(groups[-1]) + 1, len(s.ids)
            full = rows * width > budget or rows > max_batch_rows
            if groups[-1] and (full or real + width < min_efficiency * rows * width):
                groups.append([])
                real = 0
            groups[-1].append(s)
            real += width
        return [collate(g, clf.pad_id) for g in groups if g]

    return plan


def collate(sequences: list[Any], pad_id: int) -> Any:
    import torch

    from gliclass_pipelines.core.forward import Batch

    width = max(len(s.ids) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s.ids)] = torch.tensor(s.ids)
        mask[i, : len(s.ids)] = 1
    return Batch(sequences, ids, mask)


def capped_classifier(clf: Any, min_efficiency: float) -> Any:
    """A second Classifier on the same weights whose planner is the capped prototype."""
    from gliclass_pipelines.core.classifier import Classifier

    other = Classifier(clf.model, clf.tokenizer, source=clf.source, device=str(clf.device), dtype=clf.dtype)
    other.plan_batches = capped_plan(other, min_efficiency)
    return other


def threaded(threads: int, fn: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
    import torch

    def run(texts: list[str]) -> Any:
        torch.set_num_threads(threads)
        return fn(texts)

    return run


def plan_entries(models: dict[str, Any], texts: list[str], labels: list[str]) -> list[tuple[Contender, dict]]:
    """(contender, facts) for each batch plan and thread count tried, and the reference for scale."""
    clf = models["clf"]
    capped = capped_classifier(clf, 0.9)
    ref = reference_pipeline(models)
    default_threads = len(os.sched_getaffinity(0))
    entries = [
        (Contender(f"reference b8, {t} thr", threaded(t, lambda x: ref(x, labels)), texts), {})
        for t in sorted({1, default_threads})
    ]
    for threads, budgets in ((1, (1, 512, 1024, 2048, 4096, 8192)), (2, (1024, 4096))):
        for bt in budgets:
            run = threaded(threads, lambda t, bt=bt: clf.run(t, labels, batch_tokens=bt))
            name = f"engine plan, batch_tokens {bt}" if bt > 1 else "engine plan, one sequence per batch"
            entries.append(
                (Contender(f"{name}, {threads} thr", run, texts), plan_facts(clf, texts, labels, bt))
            )
    for bt in (2048, 4096, 8192):
        run = threaded(1, lambda t, bt=bt: capped.run(t, labels, batch_tokens=bt))
        facts = plan_facts(capped, texts, labels, bt)
        entries.append((Contender(f"capped plan (eff >= 0.9), batch_tokens {bt}, 1 thr", run, texts), facts))
    return entries


SWEEP_TEXTS = {8: 64, 128: 16}


def plan_facts(clf: Any, texts: list[str], labels: list[str], batch_tokens: int) -> dict[str, Any]:
    batches = clf.batches(texts, labels, batch_tokens=batch_tokens)
    real, padded = sum(b.real_tokens for b in batches), sum(b.padded_tokens for b in batches)
    return {"batch_tokens": batch_tokens, "batches": len(batches), "padding_efficiency": real / padded}


def sweep_plans(models: dict[str, Any], texts: list[str], n_labels: int, rounds: int) -> list[dict[str, Any]]:
    entries = plan_entries(models, texts, common.label_set(n_labels))
    alternate([c for c, _ in entries], rounds)
    rows = []
    for c, facts in entries:
        row = {"labels": n_labels, "how": c.name, "texts": len(texts), **facts}
        row.update(texts_per_s=c.texts_per_s(), texts_per_cpu_s=c.texts_per_cpu_s())
        rows.append(row)
        print(
            f"[plan {n_labels:>3} labels] {c.name}: {row['texts_per_s']:.2f} texts/s, "
            f"{row['texts_per_cpu_s']:.2f} texts/CPU-s {facts}",
            flush=True,
        )
    return rows


class Backends:
    """Ways to run the GLiClass forward on a batch, each returning float32 logits as numpy."""

    def __init__(self, clf: Any, probe: Any, workdir: Path, compile_model: bool) -> None:
        self.clf, self.model, self.probe = clf, clf.model, probe
        self.ways: dict[str, Callable[[Any], Any]] = {"eager fp32": self.eager(self.model)}
        self.setup_seconds: dict[str, float] = {}
        self.add("onnxruntime fp32", lambda: self.onnx(workdir / "gliclass.onnx"))
        self.add("eager bf16 weights", lambda: self.eager(self.bf16_copy()))
        self.add("eager fp32 + bf16 autocast", lambda: self.autocast())
        if compile_model:
            self.add("torch.compile fp32 (dynamic)", lambda: self.compiled())

    def add(self, name: str, make: Callable[[], Callable[[Any], Any]]) -> None:
        try:
            self.setup_seconds[name], self.ways[name] = common.timed(make)
        except Exception as exc:  # a backend that cannot be built is reported, not fatal
            print(f"backend {name} failed: {type(exc).__name__}: {exc}", flush=True)

    def eager(self, model: Any) -> Callable[[Any], Any]:
        import torch

        def forward(b: Any) -> Any:
            k = max(len(s.group.labels) for s in b.sequences)
            with torch.inference_mode():
                out = model(input_ids=b.input_ids, attention_mask=b.attention_mask, max_num_classes=k)
                return out.logits.float().numpy()

        return forward

    def bf16_copy(self) -> Any:
        import copy

        import torch

        return copy.deepcopy(self.model).to(torch.bfloat16)

    def autocast(self) -> Callable[[Any], Any]:
        import torch

        eager = self.eager(self.model)

        def forward(b: Any) -> Any:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return eager(b)

        return forward

    def compiled(self) -> Callable[[Any], Any]:
        import torch

        forward = self.eager(torch.compile(self.model, dynamic=True))
        forward(self.probe)
        return forward

    def onnx(self, path: Path) -> Callable[[Any], Any]:
        import onnxruntime as ort
        import torch

        export_onnx(self.model, self.probe, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def forward(b: Any) -> Any:
            feeds = {"input_ids": b.input_ids.numpy(), "attention_mask": b.attention_mask.numpy()}
            return session.run(None, feeds)[0]

        return forward


def export_onnx(model: Any, batch: Any, path: Path) -> None:
    """torch.onnx.export (TorchScript, opset 17) with dynamic batch, sequence and label axes.

    The label count is taken from the count of <<LABEL>> tokens inside the graph, so it is not baked in.
    """
    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            k = (input_ids == model.config.class_token_index).sum(-1).max()
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, max_num_classes=k)
            return out.logits

    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    torch.onnx.export(
        Logits().eval(),
        (batch.input_ids, batch.attention_mask),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={**axes, "logits": {0: "batch", 1: "labels"}},
    )


def max_score_diff(forward: Callable[[Any], Any], reference: list[Any], batches: list[Any]) -> float:
    import numpy as np

    def scores(x: Any) -> Any:
        return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))

    worst = 0.0
    for b, ref in zip(batches, reference):
        k = max(len(s.group.labels) for s in b.sequences)
        worst = max(worst, float(np.abs(scores(forward(b))[:, :k] - scores(ref)[:, :k]).max()))
    return worst


def sweep_backends(backends: Backends, texts: list[str], n_labels: int, args: Any) -> list[dict]:
    clf = backends.clf
    batches = clf.batches(texts, common.label_set(n_labels), batch_tokens=args.batch_tokens)
    reference = [backends.ways["eager fp32"](b) for b in batches]
    entries = [
        Contender(name, lambda t, f=f: [f(b) for b in batches], texts) for name, f in backends.ways.items()
    ]
    alternate(entries, args.rounds)
    eager = entries[0]
    rows = []
    for c in entries:
        row = {"labels": n_labels, "how": c.name, "texts": len(texts), "batches": len(batches)}
        row.update(texts_per_s=c.texts_per_s(), texts_per_cpu_s=c.texts_per_cpu_s())
        row["vs_eager"] = c.texts_per_s() / eager.texts_per_s()
        row["cpu_vs_eager"] = c.texts_per_cpu_s() / eager.texts_per_cpu_s()
        row["max_score_diff"] = max_score_diff(backends.ways[c.name], reference, batches)
        row["setup_s"] = backends.setup_seconds.get(c.name, 0.0)
        rows.append(row)
        print(
            f"[backend {n_labels:>3} labels] {c.name}: {row['texts_per_s']:.2f} texts/s, "
            f"{row['cpu_vs_eager']:.2f}x eager per CPU-s, max |score diff| {row['max_score_diff']:.1e}",
            flush=True,
        )
    return rows


def sweep(args: Any) -> int:
    import torch

    shape = common.SHAPES[args.shape_names[0]]
    texts = {
        n: common.sample_texts(args.corpus, args.texts or SWEEP_TEXTS.get(n, 32)) for n in args.label_counts
    }
    torch.set_num_threads(args.threads)
    models = load_models(shape, args.threads)
    clf = models["clf"]
    report = {"environment": environment(args), "shape": shape.name}
    report["peak_flops"] = common.matmul_peak(args.threads)["cpu"]
    report["plans"] = [row for n in texts for row in sweep_plans(models, texts[n], n, args.rounds)]
    torch.set_num_threads(args.threads)
    probe = clf.batches(texts[args.label_counts[0]][:4], common.label_set(8))[0]
    backends = Backends(clf, probe, common.CACHE / f"onnx-{shape.name}", args.compile)
    report["backends"] = [row for n in texts for row in sweep_backends(backends, texts[n], n, args)]
    report["environment"]["loadavg_end"] = os.getloadavg()
    write(report, args, sweep_markdown(report), with_plot=False)
    return 0


def sweep_markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"# Sweep: batch plans, threads and forward backends ({env['when']})",
        "",
        f"{report['shape']} shape, `{env['corpus']}` texts, {env['rounds']} alternating rounds, median; "
        f"{env['cores']} cores; load average {env['loadavg_start'][0]:.1f} at start, "
        f"{env['loadavg_end'][0]:.1f} at end; matmul peak {report['peak_flops'] / 1e9:.0f} GFLOP per "
        f"CPU-second ({env['threads']} thread).",
        "",
        "## Our Classifier end to end, by batch plan and torch threads (the reference for scale)",
        "",
        "| labels | texts | how | texts/s | texts/CPU-s | padding eff | batches |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["plans"]:
        eff = f"{r['padding_efficiency']:.3f}" if "padding_efficiency" in r else ""
        lines.append(
            f"| {r['labels']} | {r['texts']} | {r['how']} | {r['texts_per_s']:.2f} | "
            f"{r['texts_per_cpu_s']:.2f} | {eff} | {r.get('batches', '')} |"
        )
    lines += [
        "",
        f"## Forward pass only, on the engine's batches ({env['threads']} thread), by backend",
        "",
        "| labels | texts | backend | texts/s | texts/CPU-s | vs eager (CPU-s) | max abs score diff "
        "| setup s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["backends"]:
        lines.append(
            f"| {r['labels']} | {r['texts']} | {r['how']} | {r['texts_per_s']:.2f} | "
            f"{r['texts_per_cpu_s']:.2f} | {r['cpu_vs_eager']:.2f}x | {r['max_score_diff']:.1e} | "
            f"{r['setup_s']:.0f} |"
        )
    return "\n".join([*lines, ""])


# ----------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.sweep:
        return sweep(args)
    report = {"environment": environment(args), "shapes": [run_shape(s, args) for s in args.shape_names]}
    report["environment"]["loadavg_end"] = os.getloadavg()
    write(report, args, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
