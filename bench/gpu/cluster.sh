#!/usr/bin/env bash
# Issue 16 on the lent 2-GPU machine (nvidia-h200-x2): one queue, a Ray cluster of a head (no GPU) and two
# nodes of one GPU each (one per GPU, CUDA_VISIBLE_DEVICES), every Ray process on 127.0.0.2 with token
# authentication (with `ray start --node-ip-address=127.0.0.1` the head worker could not join there, "Failed
# to connect to Ray cluster"; on 127.0.0.2 it did, as on rented machines' private addresses); the head worker (`tuneq worker --cluster`) runs two demo jobs asking for one GPU each:
# they must run at the same time, one per node and GPU, and come back complete (report, GGUFs, ship/).
#
# Carried: .whl/ and .gpu/ (bench/gpu/prepare.sh) and .raywhl/ (Ray 2.60.0 for Python 3.12 without its
# Java jars, the Ray dependencies the machine lacks, the docker SDK, and bitsandbytes moved from .whl/ to
# keep each carry under 64 MiB). Run detached from a copy outside the tree:
#   cp -r . /tmp/repo && cd /tmp/repo && OUT=/tmp/out setsid bash bench/gpu/cluster.sh > /tmp/cluster.log 2>&1 &
# Writes to $OUT: ray-status.txt, smi.csv (both GPUs' use every 2 s), worker.log, status.json, show-*.txt,
# report-*.json, jobs.txt (submit → running → end times per job).
set -uo pipefail
cd "$(dirname "$0")/../.."
source bench/gpu/env.sh
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .raywhl/*.whl
export PATH=/tmp/site/bin:$PATH RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN=${RAY_AUTH_TOKEN:-$(python3 -c 'import secrets; print(secrets.token_hex(16))')}
# a build an earlier call started (in the background) is waited for, never started twice
[ -f /tmp/llcpp.rc ] || pgrep -f "target /tmp/llcpp" >/dev/null || start_llama_build
wait_llama || exit 1
python3 -c 'import llama_cpp; print("llama_cpp", llama_cpp.__version__, "gpu offload", llama_cpp.llama_supports_gpu_offload())'

ray stop --force >/dev/null 2>&1
ray start --head --node-ip-address=127.0.0.2 --port=6390 --num-gpus=0 --num-cpus=2 \
    --include-dashboard=false --disable-usage-stats || exit 1
for gpu in 0 1; do
    CUDA_VISIBLE_DEVICES=$gpu TUNEQ_HOME=/tmp/node$gpu TUNEQ_NODE_DIR=/tmp/node$gpu/runs \
        ray start --address=127.0.0.2:6390 --node-ip-address=127.0.0.2 --num-gpus=1 --num-cpus=8 \
        --disable-usage-stats || exit 1
done
sleep 3
ray status > "$OUT/ray-status.txt" 2>&1
ss -ltnp > "$OUT/listening.txt" 2>&1
nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used --format=csv -l 2 > "$OUT/smi.csv" &
smi=$!

python3 -m runner worker --cluster 127.0.0.2:6390 > "$OUT/worker.log" 2>&1 &
worker=$!
mkdir -p /tmp/jobs && cp -r jobs/data /tmp/jobs/
for n in a b; do
    sed "s/^name = \"demo-tiny\"/name = \"demo-gpu-$n\"/" jobs/demo-tiny.toml > "/tmp/jobs/demo-gpu-$n.toml"
    printf '\n[run]\ngpus = 1\n' >> "/tmp/jobs/demo-gpu-$n.toml"
done
python3 -m runner validate /tmp/jobs/demo-gpu-a.toml > "$OUT/validate.txt" 2>&1
echo "$(date +%T.%N) submit" >> "$OUT/jobs.txt"
python3 -m runner submit /tmp/jobs/demo-gpu-a.toml /tmp/jobs/demo-gpu-b.toml >> "$OUT/jobs.txt" 2>&1
for _ in $(seq 1 600); do
    python3 -m runner status --json > "$OUT/status.json" 2>/dev/null
    echo "$(date +%T.%N) $(python3 -c 'import json,sys; print(" ".join(f"{j["id"]}:{j["state"]}" for j in json.load(open(sys.argv[1]))["jobs"]))' "$OUT/status.json" 2>/dev/null)" >> "$OUT/jobs.txt"
    if python3 -c 'import json,sys; js=json.load(open(sys.argv[1]))["jobs"]; sys.exit(0 if js and all(j["state"] in ("succeeded","failed","cancelled","interrupted") for j in js) else 1)' "$OUT/status.json" 2>/dev/null; then
        break
    fi
    sleep 1
done
for id in 1 2; do
    python3 -m runner show "$id" > "$OUT/show-$id.txt" 2>&1
    run=$(python3 -c 'import json,sys; print(next(j["run_dir"] for j in json.load(open(sys.argv[1]))["jobs"] if j["id"] == int(sys.argv[2])))' "$OUT/status.json" "$id")
    cp "$run/report.json" "$OUT/report-$id.json" 2>/dev/null
    ls -la "$run" "$run/gguf" "$run/ship" > "$OUT/files-$id.txt" 2>&1
    grep -c . "$run/events.jsonl" >> "$OUT/files-$id.txt" 2>&1
done
kill "$worker" "$smi" 2>/dev/null
wait "$worker" 2>/dev/null
ray stop --force >/dev/null 2>&1
echo "cluster.sh done" >> "$OUT/jobs.txt"
