#!/usr/bin/env bash
# The whole issue-6 proof in one go on the hub-less H100 (`just gpu-proof`): llama-cpp-python's CUDA build
# and the random-weight models are made side by side, then the 1.5B LoRA job runs through every stage, then
# `bench-gpu` (1.5B bf16 and 8B QLoRA), then the 8B QLoRA job. Everything lands in $OUT as it finishes.
# It takes ~25 minutes, more than one device command: start it in the background (setsid) and collect $OUT.
set -uo pipefail
source bench/gpu/env.sh
start_llama_build
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
python3 -c "from runner.models.resolve import resolve_base as r; r('tuneq:random-r1-qwen-1.5b'); r('tuneq:random-llama-8b')" \
  > "$OUT/models.log" 2>&1
wait_llama || exit 1
source bench/gpu/jobs.sh
run_job jobs/gpu-random-r1-qwen-1.5b.toml
rm -rf /tmp/runs/gpu-random-r1-qwen-1.5b  # the 8B run needs the disk
common=(--warmup 2 --steps 3 --repeats 3)
python3 bench/bench_gpu.py --variants c,b,a,a+nogc,c+padded+bs2+gc "${common[@]}" \
  --out "$OUT/bench-1.5b.json" > "$OUT/bench-1.5b.log" 2>&1
python3 bench/bench_gpu.py --model tuneq:random-llama-8b --variants c+4bit,b+4bit "${common[@]}" \
  --out "$OUT/bench-8b.json" > "$OUT/bench-8b.log" 2>&1
rm -rf "$TUNEQ_CACHE"/models/random-r1-qwen-1.5b*  # disk for the 8B run (~60 GB with its base)
run_job jobs/gpu-random-llama-8b-qlora.toml
echo done >> "$OUT/jobs.txt"
