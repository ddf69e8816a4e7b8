#!/usr/bin/env bash
# The CLI on a Parquet file: turn the sample into Parquet, classify it, read the result back.
#
#   examples/cli_parquet.sh [OUTPUT_DIR]        # GLICLASS_MODEL picks the model
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
CLI=${GLICLASS_CLI:-$(command -v gliclass-pipelines || echo .venv/bin/gliclass-pipelines)}
MODEL=${GLICLASS_MODEL:-knowledgator/gliclass-edge-v3.0}
OUT=${1:-examples/output/cli_parquet}
mkdir -p "$OUT"

"$PYTHON" -c "import sys, pyarrow.json as pj, pyarrow.parquet as pq; pq.write_table(pj.read_json(sys.argv[1]), sys.argv[2])" \
  examples/data/sample.jsonl "$OUT/sample.parquet"

"$CLI" classify \
  --input "$OUT/sample.parquet" --output "$OUT/labelled" \
  --text-column text --id-column id \
  --labels examples/taxonomy.yaml --model "$MODEL" \
  --mode overwrite

ls "$OUT/labelled"
"$PYTHON" - "$OUT/labelled" <<'PY'
import sys

import pyarrow.parquet as pq

for row in pq.read_table(sys.argv[1], columns=["id", "gliclass"]).to_pylist():
    labels = ", ".join(f"{x['label']} {x['score']:.2f}" for x in row["gliclass"]) or "-"
    print(f"{row['id']:<24} {labels}")
PY
