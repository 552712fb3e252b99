#!/usr/bin/env bash
# Run here (a machine with PyPI access and `just setup` done) before `just gpu-smoke` / `just bench-gpu` on
# a hub-less GPU machine: fills .whl/ and .gpu/ (both git-ignored via .git/info/exclude), which travel
# with the tree (about 57 MB together).
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >> .git/info/exclude
mkdir -p .whl .gpu
# 1. Wheels the GPU image lacks (its python3 3.12 has torch 2.11+cu130, transformers, peft, accelerate, pyarrow).
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -d .whl \
  bitsandbytes==0.50.2 datasets==4.8.5 dill==0.4.1 hf_transfer==0.1.9 msgspec==0.22.0 multiprocess==0.70.19 \
  torchao==0.18.0 cut_cross_entropy==25.1.1 docstring_parser==0.18.0 nest_asyncio==1.6.0 shtab==1.13.0 \
  gguf==0.19.0 trl==1.15.0 typeguard==4.6.1 tyro==1.0.17 unsloth==2026.10.9 unsloth_zoo==2026.10.9 pydantic==2.13.4 \
  pydantic_core==2.46.4 annotated-types typing-inspection scikit-build-core pathspec diskcache pytest pluggy iniconfig
# bitsandbytes: keep the CPU and CUDA 13 libraries only (43 MB -> 7 MB).
zip -q -d .whl/bitsandbytes-0.50.2-*.whl 'bitsandbytes/libbitsandbytes_cuda11*' 'bitsandbytes/libbitsandbytes_cuda12*' \
  'bitsandbytes/libbitsandbytes_rocm*' 'bitsandbytes/libbitsandbytes_xpu*' || true
# 2. llama-cpp-python's source without docs, tests, vocab files and other backends (76 MB -> 5 MB), plus the converter.
work=$(mktemp -d)
.venv/bin/pip download -q --no-deps --no-binary :all: -d "$work" llama-cpp-python==0.3.36
tar xzf "$work"/llama_cpp_python-0.3.36.tar.gz -C "$work"
src="$work/llama_cpp_python-0.3.36"
rm -rf "$src"/{.git,docs,examples,tests,docker,scripts}
(cd "$src/vendor/llama.cpp" && rm -rf models docs media benches tests examples scripts .git .github ci grammars \
   prompts requirements pocs licenses .devops \
   && find tools -mindepth 1 -maxdepth 1 ! -name mtmd ! -name CMakeLists.txt -exec rm -rf {} + \
   && rm -rf ggml/src/ggml-{virtgpu,cann,openvino,webgpu,et,metal,hexagon,sycl,vulkan,opencl,zdnn,zendnn,musa,hip})
cp -r .venv/share/tuneq/llama.cpp/{convert_hf_to_gguf.py,convert_lora_to_gguf.py,conversion,gguf-py} "$src/vendor/llama.cpp/"
tar czf .gpu/llama-cpp-python-0.3.36-trimmed.tar.gz -C "$work" llama_cpp_python-0.3.36
# 3. The R1-style Qwen2 tokenizer of the random-weight models (built from llama.cpp's vocab GGUF).
.venv/bin/python -c "from pathlib import Path; from runner.models.random import build_r1_tokenizer; build_r1_tokenizer(Path('$work/r1-qwen-tokenizer-v1'))"
tar czf .gpu/r1-qwen-tokenizer-v1.tar.gz -C "$work" r1-qwen-tokenizer-v1
rm -rf "$work"
du -sh .whl .gpu
