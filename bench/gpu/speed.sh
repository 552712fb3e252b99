#!/usr/bin/env bash
# Issue 24's measurements on the lent H100, as one detached run (`setsid bash bench/gpu/speed.sh &`):
#   b15  the 1.5B LoRA job's trainer: baseline c against fixed-shape batches (bucket1024) and the
#        expandable-segments allocator (exp), alternated in fresh processes, 100 steps each (loss parity)
#   b8   the 8B QLoRA job's trainer: the old plan (8 rows x 1 with checkpointing, pinned: bs8+gc) against
#        today's planner (c+4bit: it splits the micro-batch before checkpointing), alternated
# The 8B random-weight model is built on other cores while b15 runs. Each benchmark writes its JSON after
# every variant, so a machine taken back mid-run keeps what finished. $OUT/steps.txt logs progress.
set -uo pipefail
source bench/gpu/env.sh
steps=${SPEED_STEPS:-b15 b8}
log() { echo "$(date +%T) $*" >> "$OUT/steps.txt"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
resolve() { python3 -c "from runner.models.resolve import resolve_base as r; print(r('$1'))"; }
if [[ $steps == *b8* ]]; then
  (taskset -c 8-15 python3 -c "from runner.models.resolve import resolve_base as r; r('tuneq:random-llama-8b')" \
    > "$OUT/model8.log" 2>&1; echo $? > /tmp/model8.rc) &
fi
bench=(taskset -c 0-7 python3 bench/bench_gpu.py)
for s in $steps; do
  log "start $s"
  case $s in
    b15) resolve tuneq:random-r1-qwen-1.5b > "$OUT/model15.log" 2>&1
         "${bench[@]}" --warmup 10 --steps 30 --repeats 3 --profile \
           --variants "${B15_VARIANTS:-c,c+bucket1024,c+exp,c,c+bucket1024,c+exp}" \
           --out "$OUT/bench-1.5b.json" > "$OUT/bench-1.5b.log" 2>&1 ;;
    b8) while [ ! -f /tmp/model8.rc ]; do sleep 2; done
        "${bench[@]}" --model tuneq:random-llama-8b --warmup 5 --steps 10 --repeats 3 \
          --variants "${B8_VARIANTS:-c+4bit+bs8+gc,c+4bit,c+4bit+bs8+gc,c+4bit}" \
          --out "$OUT/bench-8b.json" > "$OUT/bench-8b.log" 2>&1 ;;
  esac
  log "end $s"
done
log done
