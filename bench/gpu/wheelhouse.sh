#!/usr/bin/env bash
# Run here (PyPI access): the wheelhouse with which `just setup` runs offline on the lent GPU machine
# (bench/gpu/setup-proof.sh), packed into carries of at most 52 MB: $DEST/c1 ... (default .h-gpu/).
# What: every wheel pip resolves for tuneq's core, `train`, `gpu` and `dev` extras, Unsloth, SmolLM2's wheel and
# the llama-cpp-python build's requirements on Python 3.12 x86_64, less what the machine's python3 already holds
# (torch 2.11+cu130 and the compiled packages listed below; transformers 5.17.0), plus a trimmed llama-cpp-python
# sdist and rust-just. Two wheels are slimmed: ray without its Java jar (Python never loads it), bitsandbytes
# with its CPU and CUDA 13 libraries only (as bench/gpu/prepare.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=${DEST:-.h-gpu}
work=$(mktemp -d)
wh="$work/wh"
mkdir -p "$wh" "$work/fake"
plat=(--python-version 3.12 --implementation cp --abi cp312 --platform manylinux_2_28_x86_64
      --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
# torch resolves to a stand-in without dependencies: the machine's own is used (its CUDA wheels are not wanted)
python3 - "$work/fake" <<'PY'
import sys, zipfile
tag, info = "cp312-cp312-manylinux_2_28_x86_64", "torch-2.11.0.dist-info"
with zipfile.ZipFile(f"{sys.argv[1]}/torch-2.11.0-9-{tag}.whl", "w") as z:
    z.writestr("torch/__init__.py", "")
    z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: torch\nVersion: 2.11.0\n")
    z.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\nBuild: 9\n")
    z.writestr(f"{info}/RECORD", "")
PY
reqs=$(python3 -c 'import tomllib; d = tomllib.load(open("pyproject.toml", "rb"))["project"]; o = d["optional-dependencies"]
print("\n".join(r for r in [*d["dependencies"], *o["train"], *o["gpu"], *o["dev"]] if not r.startswith(("llama-cpp-python", "triton"))))')
python3 -m pip install -q --dry-run --ignore-installed --report "$work/report.json" --only-binary=:all: "${plat[@]}" \
  --target "$work/x" --find-links "$work/fake" $reqs torch==2.11.0 diskcache jinja2 typing-extensions \
  scikit-build-core pathspec packaging ninja rust-just uc-micro-py "setuptools>=69"
# compiled packages the machine's python3 has (KINDS.md's list for its 'cuda' image), and torch itself
have='^(torch|triton|numpy|pandas|pyarrow|tokenizers|hf-xet|aiohttp|regex|pillow|protobuf|psutil|pyyaml|safetensors|xxhash|msgpack|multidict|propcache|yarl|frozenlist|charset-normalizer|markupsafe|transformers)=='
python3 -c 'import json, sys
for i in json.load(open(sys.argv[1]))["install"]:
    print(i["metadata"]["name"].lower().replace("_", "-") + "==" + i["metadata"]["version"])' \
  "$work/report.json" | grep -Ev "$have" > "$work/want.txt"
python3 -m pip download -q --no-deps --only-binary=:all: "${plat[@]}" -d "$wh" -r "$work/want.txt" \
  $(python3 -m runner.pins unsloth) $(python3 -m runner.pins smollm2)
zip -q -d "$wh"/ray-*.whl 'ray/jars/*'
zip -q -d "$wh"/bitsandbytes-*.whl 'bitsandbytes/libbitsandbytes_cuda11*' 'bitsandbytes/libbitsandbytes_cuda12*' \
  'bitsandbytes/libbitsandbytes_rocm*' 'bitsandbytes/libbitsandbytes_xpu*' || true
# llama-cpp-python's sdist without docs, tests, other backends and vocab files but Qwen2's (76 MB -> ~10 MB)
pin=$(python3 -m runner.pins train | tr ' ' '\n' | grep '^llama-cpp-python==')
python3 -m pip download -q --no-deps --no-binary :all: -d "$work/sdist" "$pin"
tar xzf "$work"/sdist/llama_cpp_python-*.tar.gz -C "$work/sdist"
src=$(echo "$work"/sdist/llama_cpp_python-*/)
rm -rf "$src"/{.git,docs,examples,tests,docker,scripts}
(cd "$src/vendor/llama.cpp" && rm -rf docs media benches tests examples scripts .git .github ci grammars prompts \
   requirements pocs licenses .devops \
 && find models -mindepth 1 ! -name ggml-vocab-qwen2.gguf -exec rm -rf {} + \
 && find tools -mindepth 1 -maxdepth 1 ! -name mtmd ! -name CMakeLists.txt -exec rm -rf {} + \
 && rm -rf ggml/src/ggml-{virtgpu,cann,openvino,webgpu,et,metal,hexagon,sycl,vulkan,opencl,zdnn,zendnn,musa,hip})
tar czf "$wh/$(basename "$src").tar.gz" -C "$work/sdist" "$(basename "$src")"
# carries of at most 52 MB: whole files, the biggest split (rejoined by setup-carry.sh's `cat part-*`)
(cd "$wh" && for f in *; do if [ "$(stat -c %s "$f")" -gt 50000000 ]; then split -b 48m "$f" "$f.part-" && rm "$f"; fi; done)
rm -rf "$dest"/c[0-9]*
python3 - "$wh" "$dest" <<'PY'
import os, shutil, sys
wh, dest = sys.argv[1:]
# c1 goes first: what `just setup` needs before the compile (the sdist, its build backend, just itself)
first = ("llama_cpp_python-", "scikit_build_core-", "packaging-", "pathspec-", "ninja-", "rust_just-", "setuptools-")
files = sorted(os.listdir(wh), key=lambda f: (not f.startswith(first), -os.path.getsize(os.path.join(wh, f))))
bins: list[list[str]] = []
sizes: list[int] = []
for f in files:  # first fit, biggest first
    size = os.path.getsize(os.path.join(wh, f))
    i = next((i for i, s in enumerate(sizes) if s + size <= 52_000_000), None)
    if i is None:
        bins.append([]); sizes.append(0); i = len(bins) - 1
    bins[i].append(f); sizes[i] += size
for i, names in enumerate(bins, 1):
    os.makedirs(f"{dest}/c{i}", exist_ok=True)
    for f in names:
        shutil.move(os.path.join(wh, f), f"{dest}/c{i}/{f}")
    print(f"c{i}: {sizes[i - 1] / 1e6:.1f} MB, {len(names)} files")
PY
rm -rf "$work"
