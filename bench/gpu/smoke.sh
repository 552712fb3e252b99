#!/usr/bin/env bash
# `just gpu-smoke` on the hub-less H100: the GPU jobs through every stage, and the GPU tests.
# Jobs: $GPU_JOBS (default: the 1.5B LoRA job). llama-cpp-python's CUDA build runs in the background
# meanwhile, so each job is started at once and, if the build was not ready by its quantize stage, run
# again afterwards in the same run directory: finished stages are reused, training is not repeated.
# Results land in $OUT: versions, pytest log, and per job its log, report.json and the end of events.jsonl.
set -uo pipefail
source bench/gpu/env.sh
start_llama_build
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
python3 -c "import torch, transformers, trl, peft, unsloth; print(torch.__version__, transformers.__version__, trl.__version__, peft.__version__, unsloth.__version__)" > "$OUT/versions.txt" 2>&1

source bench/gpu/jobs.sh

jobs=${GPU_JOBS:-jobs/gpu-random-r1-qwen-1.5b.toml}
set -- $jobs
run_job "$1"; first=$?
wait_llama || exit 1
[ $first = 0 ] || run_job "$1"
python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tail -25 > "$OUT/pytest-gpu.txt"
prev=$(basename "$1" .toml); shift
for job in "$@"; do  # the next job gets the disk: an 8B run needs ~55 GB
  rm -rf "/tmp/runs/$prev" "$TUNEQ_CACHE"/models/random-*; df -h /tmp | tail -1 >> "$OUT/jobs.txt"
  run_job "$job"; prev=$(basename "$job" .toml)
done
