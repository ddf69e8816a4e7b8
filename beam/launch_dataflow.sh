#!/usr/bin/env bash
# Launch beam/classify_pipeline.py on Dataflow with one GPU per worker and the custom container from
# beam/Dockerfile. Extra arguments are passed through (pipeline flags or PipelineOptions).
#
#   PROJECT=my-project REGION=us-central1 BUCKET=my-bucket \
#   IMAGE=us-central1-docker.pkg.dev/my-project/repo/gliclass-beam:0.1.0 \
#   INPUT='gs://my-bucket/in/*.jsonl' OUTPUT=gs://my-bucket/out/results LABELS='sports,politics,science' \
#   beam/launch_dataflow.sh
#
# SHARING picks how the model is placed on each worker VM (see beam/README.md):
#   per-process  one model per SDK process, NVIDIA MPS shares the GPU between them (small models; default)
#   shared       --large_model: one model per VM in one process, the other processes call it
set -euo pipefail

: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}" "${IMAGE:?set IMAGE}"
: "${INPUT:?set INPUT}" "${OUTPUT:?set OUTPUT}" "${LABELS:?set LABELS}"
GPU_TYPE="${GPU_TYPE:-nvidia-l4}"
MACHINE_TYPE="${MACHINE_TYPE:-g2-standard-4}"
MAX_WORKERS="${MAX_WORKERS:-4}"
SHARING="${SHARING:-per-process}"

accelerator="worker_accelerator=type:${GPU_TYPE};count:1;install-nvidia-driver"
case "$SHARING" in
  per-process) accelerator="${accelerator};use_nvidia_mps"; sharing_flags=() ;;
  shared) sharing_flags=(--large_model) ;;
  *) echo "SHARING must be per-process or shared, got '$SHARING'" >&2; exit 2 ;;
esac

exec python "$(dirname "$0")/classify_pipeline.py" \
  --runner=DataflowRunner \
  --project="$PROJECT" \
  --region="$REGION" \
  --temp_location="gs://${BUCKET}/tmp" \
  --staging_location="gs://${BUCKET}/staging" \
  --job_name="gliclass-$(date +%Y%m%d-%H%M%S)" \
  --sdk_container_image="$IMAGE" \
  --sdk_location=container \
  --machine_type="$MACHINE_TYPE" \
  --dataflow_service_options="$accelerator" \
  --max_num_workers="$MAX_WORKERS" \
  --input="$INPUT" \
  --output="$OUTPUT" \
  --labels="$LABELS" \
  --model=/opt/gliclass/model \
  --device=auto \
  ${sharing_flags[@]+"${sharing_flags[@]}"} \
  "$@"
