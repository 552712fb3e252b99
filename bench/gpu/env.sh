# Sourced on the hub-less GPU machine (repo root as working directory): installs the carried wheels and
# unpacks the R1-style tokenizer and the trimmed llama-cpp-python source. `start_llama_build` builds
# llama-cpp-python with CUDA in the background; `wait_llama` blocks until it is done.
# How the carried files are made: bench/gpu/README.md.
export OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/llcpp:/tmp/site:$PWD HF_HUB_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1 PYTHONUNBUFFERED=1
export TUNEQ_CACHE=/tmp/tqcache TUNEQ_HOME=/tmp/tqhome
export TUNEQ_LLAMA_CPP_DIR=/tmp/llama_cpp_python-0.3.36/vendor/llama.cpp
mkdir -p "$TUNEQ_CACHE/models"
tar xzf .gpu/r1-qwen-tokenizer-v1.tar.gz -C "$TUNEQ_CACHE/models"
tar xzf .gpu/llama-cpp-python-0.3.36-trimmed.tar.gz -C /tmp

start_llama_build() {  # about 4.5 min on 16 cores; /tmp/llcpp.rc holds the exit status when done
  rm -f /tmp/llcpp.rc
  ( CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAVA_BUILD=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=16 python3 -m pip install -q --no-build-isolation --no-deps --no-index \
    --target /tmp/llcpp /tmp/llama_cpp_python-0.3.36 > "$OUT/llama-build.log" 2>&1; echo $? > /tmp/llcpp.rc ) &
}

wait_llama() {  # block until the background llama-cpp-python build ends; fail if it failed
  while [ ! -f /tmp/llcpp.rc ]; do sleep 2; done
  [ "$(cat /tmp/llcpp.rc)" = 0 ] || { tail -30 "$OUT/llama-build.log"; return 1; }
}
