"""Measure where this project's results intentionally differ from the reference's, and by how much.

    .venv/bin/python scripts/reference_differences.py

1. Long texts: ours cuts token windows (``long_text="chunk"``) and combines them by max; the reference's
   ZeroShotClassificationWithChunkingPipeline cuts 8,192-character pieces and chunks labels by 8.
2. Large taxonomies: ours splits labels into groups only when they do not fit one sequence; the reference's
   pipeline truncates the sequence (labels first), so labels past max_length get no real score.
Prints the largest and median score differences on tiny random checkpoints and the Debian fixture.
"""

from __future__ import annotations

import json
import pathlib
import statistics
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gliclass_pipelines import Classifier  # noqa: E402
from gliclass_pipelines.testing import make_tiny_checkpoint  # noqa: E402


def texts() -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "tests/data/debian_packages.jsonl").open()]
    return [row["text"] for row in rows]


def differences(ours: list, theirs: list) -> list[float]:
    out = []
    for mine, ref in zip(ours, theirs):
        mine = {x["label"]: x["score"] for x in mine}
        out += [abs(mine[x["label"]] - x["score"]) for x in ref if x["label"] in mine]
    return out


def report(name: str, diffs: list[float]) -> None:
    largest, median = max(diffs), statistics.median(diffs)
    print(f"{name}: {len(diffs)} scores, largest difference {largest:.3f}, median {median:.4f}")


def main() -> None:
    from gliclass import GLiClassModel, ZeroShotClassificationPipeline
    from gliclass.pipeline import ZeroShotClassificationWithChunkingPipeline
    from transformers import AutoTokenizer

    corpus = texts()
    labels = ["libraries", "games", "science", "networking", "python modules", "sound", "graphics",
              "databases", "text editors", "fonts", "kernel", "documentation"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = make_tiny_checkpoint(pathlib.Path(tmp) / "m", pooling="avg", max_length=512)
        ours = Classifier.load(str(path), device="cpu")
        model, tokenizer = GLiClassModel.from_pretrained(str(path)), AutoTokenizer.from_pretrained(str(path))
        long_texts = [" ".join(corpus[i : i + 60]) for i in range(0, 300, 60)]
        chunking = ZeroShotClassificationWithChunkingPipeline(
            model, tokenizer, max_length=512, device="cpu", progress_bar=False
        )
        theirs = [chunking([t], labels, threshold=0.0)[0] for t in long_texts]
        mine = ours.classify(long_texts, labels, threshold=0.0, long_text="chunk")
        sizes = sorted(map(len, long_texts))
        print(
            f"long texts: {len(long_texts)} texts of {sizes[0]}-{sizes[-1]} characters, {len(labels)} labels"
        )
        report("  chunk (token windows, max) vs reference chunking pipeline", differences(mine, theirs))
        words = [w.strip(".,;:()").lower() for text in corpus[:40] for w in text.split()]
        many = list(dict.fromkeys(f"{w} packages" for w in words if w.isalpha() and len(w) > 3))[:150]
        plain = ZeroShotClassificationPipeline(
            model, tokenizer, max_length=512, max_classes=len(many), device="cpu", progress_bar=False
        )
        short = corpus[:5]
        theirs = [plain([t], many, threshold=0.0, batch_size=1)[0] for t in short]
        mine = ours.classify(short, many, threshold=0.0)
        print(f"large taxonomy: {len(many)} labels, {len(ours.prepare(many).groups)} label groups here")
        report("  label groups vs reference (one truncated sequence)", differences(mine, theirs))


if __name__ == "__main__":
    main()
