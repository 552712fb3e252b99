"""Validate's Q4_K_M size estimate against llama.cpp's own count: a GGUF of each shape with no data (a
sparse file) goes through ``llama_model_quantize`` with ``dry_run``, which logs the quantized size without
writing; and against the real files measured in ../shared/FACTS.md."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runner.core.disksize import Shape, export_bytes, quant_bytes

MIB = 2**20
# A child process writes the data-less f16 GGUF and asks llama.cpp for the Q4_K_M size (it logs to stderr).
_DRY_RUN = r"""
import ctypes, os, sys
import numpy as np
import gguf
import llama_cpp

path, arch, vocab, hidden, inter, layers, heads, kv, tied = sys.argv[1:]
vocab, hidden, inter, layers, heads, kv = map(int, (vocab, hidden, inter, layers, heads, kv))
writer = gguf.GGUFWriter(path, arch)
writer.add_context_length(4096)
writer.add_embedding_length(hidden)
writer.add_block_count(layers)
writer.add_feed_forward_length(inter)
writer.add_head_count(heads)
writer.add_head_count_kv(kv)
writer.add_layer_norm_rms_eps(1e-6)
writer.add_file_type(1)
hd = hidden // heads
tensors = [("token_embd.weight", (vocab, hidden)), ("output_norm.weight", (hidden,))]
tensors += [] if tied == "1" else [("output.weight", (vocab, hidden))]
for i in range(layers):
    tensors += [(f"blk.{i}.{name}", shape) for name, shape in (
        ("attn_norm.weight", (hidden,)), ("ffn_norm.weight", (hidden,)),
        ("attn_q.weight", (heads * hd, hidden)), ("attn_k.weight", (kv * hd, hidden)),
        ("attn_v.weight", (kv * hd, hidden)), ("attn_output.weight", (hidden, heads * hd)),
        ("ffn_gate.weight", (inter, hidden)), ("ffn_up.weight", (inter, hidden)),
        ("ffn_down.weight", (hidden, inter)))]
data = 0
for name, shape in tensors:
    dtype = np.dtype(np.float32 if len(shape) == 1 else np.float16)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    writer.add_tensor_info(name, shape, dtype, nbytes)
    data += -(-nbytes // 32) * 32
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_ti_data_to_file()
writer.close()
size = os.path.getsize(path)
with open(path, "r+b") as f:
    f.truncate(size + (-size % 32) + data)  # sparse: the weights take no disk
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
params.dry_run = True
sys.exit(llama_cpp.llama_model_quantize(path.encode(), (path + ".q4").encode(), ctypes.byref(params)))
"""

SHAPES = {  # name: (llama.cpp arch, shape)
    "SmolLM2-135M (tied)": ("llama", Shape(49_152, 576, 1536, 30, 576, 192, tied=True)),
    "tiny Qwen2, untied head": ("qwen2", Shape(152_064, 256, 768, 2, 256, 128, tied=False)),
    "Qwen2.5-0.5B, untied head": ("qwen2", Shape(151_936, 896, 4864, 24, 896, 128, tied=False)),
    "R1-Distill-Qwen-1.5B": ("qwen2", Shape(151_936, 1536, 8960, 28, 1536, 256, tied=False)),
    "Llama-3-8B": ("llama", Shape(128_256, 4096, 14336, 32, 4096, 1024, tied=False)),
}


def llama_cpp_q4_k_m_bytes(tmp_path: Path, arch: str, shape: Shape) -> int:
    """The tensor bytes llama.cpp reports for Q4_K_M of ``shape`` (tokenizer metadata not included)."""
    heads = shape.q_width // 64
    args = [arch, shape.vocab, shape.hidden, shape.intermediate, shape.layers, heads]
    args += [shape.kv_width // 64, int(shape.tied)]
    done = subprocess.run(
        [sys.executable, "-c", _DRY_RUN, str(tmp_path / "f16.gguf"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r"quant size\s*=\s*([\d.]+) MiB", done.stderr + done.stdout)
    assert done.returncode == 0 and found, done.stderr[-2000:]
    return int(float(found.group(1)) * MIB)


@pytest.mark.parametrize("name", list(SHAPES))
def test_the_q4_k_m_estimate_matches_llama_cpp_tensor_by_tensor(tmp_path: Path, name: str) -> None:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gguf")
    arch, shape = SHAPES[name]
    measured = llama_cpp_q4_k_m_bytes(tmp_path, arch, shape)
    estimated = quant_bytes(shape, "q4_k_m") - 40 * shape.vocab  # without the tokenizer's metadata
    assert abs(estimated - measured) / measured < 0.01, (estimated, measured)
    assert os.path.getsize(tmp_path / "f16.gguf") > 0


@pytest.mark.parametrize(
    ("name", "real_bytes"),
    [("SmolLM2-135M (tied)", 105_000_000), ("Qwen2.5-0.5B, untied head", 491_000_000)],
)
def test_the_estimate_is_within_ten_percent_of_real_files(name: str, real_bytes: int) -> None:
    """Real Q4_K_M files measured in FACTS.md (the average bits per weight gave 82 and 386 MB)."""
    _, shape = SHAPES[name]
    assert abs(export_bytes(shape, ["q4_k_m"])["quantize"] - real_bytes) / real_bytes < 0.10
