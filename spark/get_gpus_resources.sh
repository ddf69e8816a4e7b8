#!/usr/bin/env bash
# Spark GPU discovery script: print this machine's GPUs as the JSON Spark expects, e.g.
#   {"name": "gpu", "addresses": ["0", "1"]}
# Point spark.executor.resource.gpu.discoveryScript (and, on standalone clusters,
# spark.worker.resource.gpu.discoveryScript) at this file on every node. The addresses are the
# indices nvidia-smi reports, which are the CUDA device numbers the task sees (cuda:<address>).
set -euo pipefail

addresses=""
for index in $(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null || true); do
  index="${index//[[:space:]]/}"
  [[ "$index" =~ ^[0-9]+$ ]] || continue
  addresses+="${addresses:+, }\"$index\""
done
printf '{"name": "gpu", "addresses": [%s]}\n' "$addresses"
