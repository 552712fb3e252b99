#!/usr/bin/env bash
# Issue 27's 16 x 8 simulation (bench/bench_cluster.py) on the lent machine's 16 CPU cores: no GPU is used,
# the cores are what the 2-core VM lacked (sixteen simulated nodes start their Ray worker processes there).
# Carried: .rwhl/ (Ray 2.60.0 for Python 3.12 without its Java jar, dashboard client, rllib/data/serve/tune/
# train/llm; the Ray and tuneq dependencies the machine's python3 lacks). Run detached from a copy:
#   cp -r . /tmp/w && cd /tmp/w && RES=/tmp/res setsid bash bench/gpu/cluster-sim.sh > /tmp/sim.log 2>&1 &
# Each run's output goes to $RES/<name>.txt as it comes, where its CPU went (bench/cpu_by_process.py) to
# $RES/<name>-cpu.txt; SIM_RUNS picks the runs (default: both).
set -uo pipefail
cd "$(dirname "$0")/../.."
RES=${RES:-/tmp/res}
mkdir -p "$RES"
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .rwhl/*.whl || exit 1
# bytecode now, as pip's default install would: every Ray worker process imports Ray and tuneq, and the
# machine's image sets PYTHONDONTWRITEBYTECODE, so without it each compiles them anew (~3 CPU-s a process)
python3 -m compileall -q -j 16 /tmp/site runner > /dev/null
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
{ nproc; env | grep ^PYTHON; lscpu | grep -E "Model name|^CPU\(s\)"; free -g | head -2; } > "$RES/machine.txt"
sim() {  # name, then bench_cluster.py's arguments
    local name=$1; shift
    (while sleep 5; do echo "$(date +%T) $(cut -d' ' -f1-3 /proc/loadavg)"; done) > "$RES/$name-load.txt" &
    local loadmon=$!
    python3 bench/cpu_by_process.py --every 1 > "$RES/$name-cpu.txt" 2>&1 &
    local cpumon=$!
    python3 bench/bench_cluster.py --skip-latency --scale-nodes 16 --gpus-per-node 8 "$@" \
        --keep-log "$RES/$name-worker.log" > "$RES/$name.txt" 2>&1
    gzip -f "$RES/$name-worker.log"
    echo "rc=$?" >> "$RES/$name.txt"
    kill $loadmon $cpumon
    wait $cpumon
}
for run in ${SIM_RUNS:-30s 2s}; do
    case $run in
        30s) sim 16x8-512x30s --scale-jobs 512 --job-s 30 ;;
        2s) sim 16x8-${SIM_2S_JOBS:-1000}x2s --scale-jobs ${SIM_2S_JOBS:-1000} --job-s 2 ;;
    esac
done
touch "$RES/done"
