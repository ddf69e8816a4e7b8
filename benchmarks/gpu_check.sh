#!/usr/bin/env bash
# GPU check: our Classifier on cuda (dtype auto: bf16 where supported, else fp16), base-v3.0 shape
# (DeBERTa-v3-base geometry, random weights), 1 to 128 labels; prints texts/s per label count.
# Runs without the project's venv, with whatever python has torch (CUDA build), transformers and gliclass:
# the package is used from this checkout (PYTHONPATH), nothing is downloaded. Well under 8 minutes on one
# H100/H200 (a hard `timeout` stops it at 7m30s).
#
#   bash benchmarks/gpu_check.sh                       # defaults below
#   GPU_CHECK_TEXTS=256 GPU_CHECK_LABELS=8 bash benchmarks/gpu_check.sh
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_SHAPE=tiny GPU_CHECK_TEXTS=16 bash benchmarks/gpu_check.sh   # dry run
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3 || command -v python)}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export GPU_CHECK_SHAPE="${GPU_CHECK_SHAPE:-base}" GPU_CHECK_DEVICE="${GPU_CHECK_DEVICE:-cuda}"
export GPU_CHECK_TEXTS="${GPU_CHECK_TEXTS:-2048}" GPU_CHECK_LABELS="${GPU_CHECK_LABELS:-1,8,32,128}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
if ! "$PY" -c "import torch, transformers, tokenizers, gliclass" 2>/dev/null; then
  echo "gpu_check: $PY lacks torch, transformers, tokenizers or gliclass; set PYTHON to one that has them" >&2
  exit 2
fi

exec timeout 450 "$PY" - <<'PY'
from __future__ import annotations

import os
import time

import torch

import common
from gliclass_pipelines.core.classifier import Classifier

device = os.environ["GPU_CHECK_DEVICE"]
if device.startswith("cuda") and not torch.cuda.is_available():
    raise SystemExit("gpu_check: torch sees no CUDA device (is this torch a CUDA build?)")
if device == "cpu":
    torch.set_num_threads(1)  # dry runs on shared CPUs: more threads only spin (see benchmarks/README.md)
shape = common.SHAPES[os.environ["GPU_CHECK_SHAPE"]]
n = int(os.environ["GPU_CHECK_TEXTS"])
started = time.perf_counter()
path = common.gliclass_checkpoint(shape)
clf = Classifier.load(path, device=device, dtype="auto")
print(f"{shape.name} shape on {device} ({clf.dtype}), checkpoint ready in {time.perf_counter() - started:.0f}s")
texts = common.corpus_or_synthetic(["debian"], n)[:n]


def sync() -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn) -> float:
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


print("labels  texts/s  forward-only texts/s  padding eff  batches  seconds")
for k in [int(x) for x in os.environ["GPU_CHECK_LABELS"].split(",")]:
    labels = common.label_set(k)
    clf.run(texts[:64], labels)  # warm-up: kernels, allocator
    batches = clf.batches(texts, labels)
    seconds = timed(lambda: clf.run(texts, labels))
    forward = timed(lambda: [clf.forward(b) for b in batches])
    real, padded = sum(b.real_tokens for b in batches), sum(b.padded_tokens for b in batches)
    print(
        f"{k:>6}  {n / seconds:>7.1f}  {n / forward:>20.1f}  {real / padded:>11.3f}  {len(batches):>7}"
        f"  {seconds:>7.1f}",
        flush=True,
    )
if device.startswith("cuda"):
    print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
print(f"total {time.perf_counter() - started:.0f}s")
PY
