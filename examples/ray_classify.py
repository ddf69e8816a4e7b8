"""Ray Data: add a column of labels to a Dataset with an actor pool (one model per actor).

    .venv/bin/python examples/ray_classify.py      # GLICLASS_MODEL picks the model

On a GPU cluster pass num_gpus=1 (each actor gets one GPU) and concurrency=<number of GPUs>.
"""

from __future__ import annotations

import os
from pathlib import Path

import ray

from gliclass_pipelines.ray_data import classify_dataset

MODEL = os.environ.get("GLICLASS_MODEL") or "knowledgator/gliclass-edge-v3.0"
DATA = Path(__file__).resolve().parent / "data" / "sample.jsonl"
LABELS = ["games", "science", "audio", "graphics", "networking", "security", "databases", "machine learning"]


def main() -> list[dict]:
    ds = ray.data.read_json(str(DATA))
    out = classify_dataset(
        ds, "text", model=MODEL, labels=LABELS, output="top", concurrency=1, batch_size=256
    )
    return out.select_columns(["id", "gliclass"]).take_all()


if __name__ == "__main__":
    ray.init(
        num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}
    )
    try:
        for row in main():
            top = row["gliclass"]
            print(row["id"], "-" if top is None else f"{top['label']} {top['score']:.2f}")
    finally:
        ray.shutdown()
