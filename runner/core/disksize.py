"""What the export stages write: 16-bit weights take 2 bytes a parameter (the merged safetensors, the f16
GGUF); a quant is sized tensor by tensor where the model's shape is known, else by llama.cpp's average bits
per weight. ``tuneq validate`` prints it; the pipeline checks free space against it (runner/pipeline/disk.py).

Tensor by tensor (:func:`quant_bytes`) follows llama.cpp's choice of block type per tensor for the k-quant
mixes (``llama_tensor_get_type``): the output head (the token embeddings when they are tied) in Q6_K; for
Q4_K_M and Q5_K_M, ``attn_v`` and ``ffn_down`` in Q6_K in about half the layers ("more bits": the first and
last eighth and every third between); a tensor whose rows are not a multiple of 256 falls back to a 32-wide
type (Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0). The tensor bytes match llama.cpp's own dry-run count
within 0.1% for SmolLM2-135M, a tiny Qwen2 with an untied head, Qwen2.5-0.5B, the 1.5B and the 8B shapes
(tests/test_quant_size.py); whole files: SmolLM2 Q4_K_M 105 MB (estimate 106 MB), Qwen2.5-0.5B with an
untied head 491 MB (estimate 491 MB), where the average bits per weight said 82 and 386 MB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

GB = 10**9
# Average bits per weight of llama.cpp's quant types (token embeddings and output kept wider included).
_QUANT_BITS = {
    "f16": 16.0, "bf16": 16.0, "q8_0": 8.5, "q6_k": 6.6, "q5_k_m": 5.7, "q5_k_s": 5.5, "q5_1": 6.0,
    "q5_0": 5.5, "q4_k_m": 4.9, "q4_k_s": 4.6, "q4_1": 5.0, "q4_0": 4.5, "iq4_nl": 4.5, "iq4_xs": 4.3,
    "q3_k_l": 4.3, "q3_k_m": 3.9, "q3_k_s": 3.5, "iq3_m": 3.7, "iq3_s": 3.5, "iq3_xs": 3.3, "iq3_xxs": 3.1,
    "q2_k": 3.4, "tq2_0": 2.1, "tq1_0": 1.7,
}  # fmt: skip
_UNKNOWN_BITS = 8.5  # a quant not in the table: assume the largest common one
# Bytes per weight of llama.cpp's block types, and the 32-wide type used where rows are not 256-aligned.
_BLOCK_BYTES = {
    "q4_k": 144 / 256, "q5_k": 176 / 256, "q6_k": 210 / 256, "q8_0": 34 / 32, "q5_0": 22 / 32,
    "q5_1": 24 / 32, "f16": 2.0, "bf16": 2.0,
}  # fmt: skip
_FALLBACK = {"q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0"}
# Per quant: (the type of most tensors, the head's, attn_v/ffn_down's in "more bits" layers).
_MIXES = {
    "q4_k_m": ("q4_k", "q6_k", "q6_k"),
    "q5_k_m": ("q5_k", "q6_k", "q6_k"),
    "q6_k": ("q6_k", "q6_k", "q6_k"),
    "q8_0": ("q8_0", "q8_0", "q8_0"),
    "f16": ("f16", "f16", "f16"),
    "bf16": ("bf16", "bf16", "bf16"),
}
_VOCAB_BYTES = 40  # tokenizer metadata per vocabulary entry (the token, its score and type, merges)


@dataclass(frozen=True)
class Shape:
    """A decoder's weight matrices, as quantization sizes depend on them (widths in units)."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    q_width: int  # attention heads x head size
    kv_width: int  # key/value heads x head size
    tied: bool  # the output head shares the token embeddings

    @property
    def parameters(self) -> int:
        """Embeddings, head and the layers' linear weights (norms are negligible)."""
        h = self.hidden
        attention = 2 * h * self.q_width + 2 * h * self.kv_width
        return self.vocab * h * (1 if self.tied else 2) + self.layers * (
            attention + 3 * h * self.intermediate
        )


def _more_bits(layer: int, layers: int) -> bool:
    """llama.cpp's ``use_more_bits``: the first and last eighth of the layers and every third between."""
    eighth = layers // 8
    return layer < eighth or layer >= 7 * layers // 8 or (layer - eighth) % 3 == 2


def _tensor_bytes(kind: str, rows: int, width: int) -> float:
    """Bytes of a ``rows`` x ``width`` matrix in block type ``kind`` (``width``: llama.cpp's row length)."""
    if width % 256 and kind in _FALLBACK:
        kind = _FALLBACK[kind]
    return rows * width * _BLOCK_BYTES[kind]


def quant_bytes(shape: Shape, quant: str) -> int:
    """Bytes of the GGUF llama.cpp writes for ``quant``: tensor by tensor for the mixes it knows, else by the
    quant's average bits per weight."""
    if quant not in _MIXES:
        return int(shape.parameters * _QUANT_BITS.get(quant, _UNKNOWN_BITS) / 8)
    base, head, more = _MIXES[quant]
    h = shape.hidden
    total = _tensor_bytes(head, shape.vocab, h) + (0 if shape.tied else _tensor_bytes(base, shape.vocab, h))
    for layer in range(shape.layers):
        special = more if _more_bits(layer, shape.layers) else base
        total += _tensor_bytes(base, shape.q_width, h) + _tensor_bytes(base, h, shape.q_width)  # q, o
        total += _tensor_bytes(base, shape.kv_width, h) + _tensor_bytes(special, shape.kv_width, h)  # k, v
        total += 2 * _tensor_bytes(base, shape.intermediate, h)  # gate, up
        total += _tensor_bytes(special, h, shape.intermediate)  # down
    norms = 4 * h * (2 * shape.layers + 1)
    return int(total + norms + _VOCAB_BYTES * shape.vocab)


def export_bytes(size: Shape | int, quants: Sequence[str]) -> dict[str, int]:
    """Bytes each export stage writes for a model of this shape (or only its parameter count, then by
    average bits per weight) and the ``export.gguf`` list."""
    params = size.parameters if isinstance(size, Shape) else size
    quantized = sum(
        quant_bytes(size, q) if isinstance(size, Shape) else params * _QUANT_BITS.get(q, _UNKNOWN_BITS) / 8
        for q in quants
        if q != "f16"
    )
    return {"merged": 2 * params, "gguf": 2 * params, "quantize": int(quantized)}


def size_text(n: float) -> str:
    """Bytes for people, in decimal units as disks are sold and ``df -H`` counts: ``3.1 GB``, ``850 MB``,
    ``12 kB``, ``812 B``. The one way tuneq writes a size (CLI, TUI, events, checks)."""
    if n >= GB:
        return f"{n / GB:.1f} GB"
    for unit, scale in (("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.0f} {unit}"
    return f"{n:.0f} B"


def describe(size: Shape | int, quants: Sequence[str]) -> str:
    """The ``tuneq validate`` line: what the export stages will write in all, and by stage."""
    sizes = export_bytes(size, quants)
    parts = [f"merged 16-bit {size_text(sizes['merged'])}", f"f16 GGUF {size_text(sizes['gguf'])}"]
    if sizes["quantize"]:
        listed = " + ".join(q for q in quants if q != "f16")
        parts.append(f"{listed} {size_text(sizes['quantize'])}")
    return f"~{size_text(sum(sizes.values()))} written by export ({', '.join(parts)})"
