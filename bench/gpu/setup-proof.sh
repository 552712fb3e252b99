#!/usr/bin/env bash
# On the lent GPU machine (no network), from a fresh copy of the checkout: `just setup` offline against the
# wheelhouse of bench/gpu/wheelhouse.sh, then `just demo` and the GPU tests side by side, each timed (docs/benchmarks.md,
# "GPU set-up"). Logs and times.txt go to $PROOF_OUT; `done` holds the exit status at the end.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${PROOF_OUT:-/tmp/proof/out}
wh=${WHEELHOUSE:-/tmp/wh}
mkdir -p "$out"
export PIP_NO_INDEX=1 PIP_FIND_LINKS=$wh PIP_DISABLE_PIP_VERSION_CHECK=1
export HF_HUB_OFFLINE=1 TUNEQ_HOME=/tmp/tqhome TUNEQ_CACHE=/tmp/tqcache PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --target /tmp/just "$wh"/rust_just-*.whl && export PATH=/tmp/just/bin:$PATH

step() {  # step NAME CMD...: run, log to NAME.log, append "NAME rc=N S s" to times.txt
  local name=$1 start rc
  shift
  start=$(date +%s)
  "$@" > "$out/$name.log" 2>&1
  rc=$?
  echo "$name rc=$rc $(( $(date +%s) - start )) s  ($*)" | tee -a "$out/times.txt"
  return $rc
}

{ nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader; nvcc --version | tail -1
  python3 -c 'import torch; print("system python3:", torch.__version__, torch.version.cuda)'; nproc; } > "$out/machine.txt" 2>&1
rc=0
step setup just setup || rc=$?
cp .venv/share/tuneq/llama-build.log "$out/" 2>/dev/null
if [ $rc = 0 ]; then
  # side by side (one GPU, 16 cores), each with its own Unsloth compile folder and tuneq state
  step demo just demo & demo=$!
  UNSLOTH_COMPILE_LOCATION=/tmp/unsloth-pytest TUNEQ_HOME=/tmp/tqhome-pytest \
    step pytest-gpu .venv/bin/python -m pytest -m gpu -q -p no:cacheprovider & tests=$!
  wait $demo || rc=$?
  wait $tests || rc=$?
fi
.venv/bin/python -m pip list 2>/dev/null | grep -i -E '^(torch|llama|unsloth|transformers|trl|peft|bitsandbytes|triton) ' >> "$out/machine.txt"
echo $rc > "$out/done"
