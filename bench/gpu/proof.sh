#!/usr/bin/env bash
# The whole issue-6 proof in one go on the hub-less H100 (`just gpu-proof`). llama-cpp-python's CUDA build
# and the random-weight models are made side by side, then the steps in $PROOF_STEPS run in order:
#   probe    load and score the 1.5B model's f16 and Q4_K_M GGUFs in every way the fidelity stage can
#            (ppl_probe.py), and what the CUDA build links and exports (libs.txt)
#   job15    the 1.5B LoRA job through every stage
#   pytest   the GPU tests (tests/test_gpu.py)
#   bench15  bench-gpu on the 1.5B shape: c, b, a, a+nogc, c+padded+bs2+gc
#   bench8   bench-gpu on the 8B shape, QLoRA: c+4bit, b+4bit
#   job8     the 8B QLoRA job through every stage
# Everything lands in $OUT as it finishes; jobs.txt gets a line per step and "done" at the end.
# All steps take ~30 minutes, more than one device command: start it detached (setsid) and collect $OUT.
set -uo pipefail
source bench/gpu/env.sh
source bench/gpu/jobs.sh
steps=${PROOF_STEPS:-probe job15 pytest bench15 bench8 job8}
bench=(python3 bench/bench_gpu.py --warmup 2 --steps 3 --repeats 3)
step() { echo "$(date +%T) step $1" >> "$OUT/jobs.txt"; }

start_llama_build
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
models="r('tuneq:random-r1-qwen-1.5b')"
[[ $steps == *8* ]] && models+="; r('tuneq:random-llama-8b')"
python3 -c "from runner.models.resolve import resolve_base as r; $models" > "$OUT/models.log" 2>&1
if [[ $steps == *probe* ]]; then
  python3 "$TUNEQ_LLAMA_CPP_DIR/convert_hf_to_gguf.py" "$TUNEQ_CACHE"/models/random-r1-qwen-1.5b-* \
    --outtype f16 --outfile /tmp/probe-1.5b-f16.gguf >> "$OUT/models.log" 2>&1
fi
wait_llama || exit 1
for s in $steps; do
  step "$s"
  case $s in
    probe) python3 -c "import llama_cpp, pathlib; from runner.pipeline.stages.quantize import quantize_file as q; \
             q(*map(pathlib.Path, ['/tmp/probe-1.5b-f16.gguf', '/tmp/probe-1.5b-q4.gguf']), 15)" >> "$OUT/models.log" 2>&1
           lib=/tmp/llcpp/llama_cpp/lib
           { for so in libllama libggml-cuda; do echo "$so: $(readelf -d $lib/$so.so | grep -o 'NEEDED.*' | tr '\n' ' ')"
               echo "  exports $(nm -D --defined-only $lib/$so.so | c++filt | grep -c ' [TW] std::') std:: functions"; done
             strings -a $lib/libggml-cuda.so | grep -m3 "GCC: ("; g++ --version | head -1; nvcc --version | tail -2
             env | grep -i -E "flags|nvcc|cmake" ; } > "$OUT/libs.txt" 2>&1
           python3 bench/gpu/ppl_probe.py /tmp/probe-1.5b-f16.gguf /tmp/probe-1.5b-q4.gguf > "$OUT/probe.log" 2>&1
           rm -f /tmp/probe-1.5b-*.gguf ;;
    job15) run_job jobs/gpu-random-r1-qwen-1.5b.toml
           rm -rf /tmp/runs/gpu-random-r1-qwen-1.5b ;;  # the 8B run needs the disk
    pytest) python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py > "$OUT/pytest-gpu.txt" 2>&1 ;;
    bench15) "${bench[@]}" --variants c,b,a,a+nogc,c+padded+bs2+gc \
               --out "$OUT/bench-1.5b.json" > "$OUT/bench-1.5b.log" 2>&1 ;;
    bench8) "${bench[@]}" --model tuneq:random-llama-8b --variants c+4bit,b+4bit \
              --out "$OUT/bench-8b.json" > "$OUT/bench-8b.log" 2>&1 ;;
    job8) rm -rf "$TUNEQ_CACHE"/models/random-r1-qwen-1.5b*  # disk for the 8B run (~60 GB with its base)
          run_job jobs/gpu-random-llama-8b-qlora.toml ;;
  esac
done
echo done >> "$OUT/jobs.txt"
