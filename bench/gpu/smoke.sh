#!/usr/bin/env bash
# `just gpu-smoke` on the hub-less H100: GPU tests, then the 1.5B job (LoRA) through every stage.
# Results land in $OUT: pytest log, the run's report.json, smoke.json and events.jsonl.
set -uo pipefail
source bench/gpu/env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
python3 -c "import torch, transformers, trl, peft, unsloth; print(torch.__version__, transformers.__version__, trl.__version__, peft.__version__, unsloth.__version__)" > "$OUT/versions.txt" 2>&1
wait_llama || exit 1
python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tail -25 | tee "$OUT/pytest-gpu.txt"
for job in ${GPU_JOBS:-jobs/gpu-random-r1-qwen-1.5b.toml}; do
  name=$(basename "$job" .toml)
  python3 -m runner run "$job" --run-dir "/tmp/runs/$name" > "$OUT/$name.log" 2>&1
  echo "$job exit $?" | tee -a "$OUT/jobs.txt"
  cp "/tmp/runs/$name/report.json" "$OUT/$name-report.json" 2>/dev/null
  tail -c 15000000 "/tmp/runs/$name/events.jsonl" > "$OUT/$name-events.jsonl" 2>/dev/null
done
