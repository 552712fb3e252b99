"""What the export stages write: 16-bit weights take 2 bytes a parameter (the merged safetensors, the f16
GGUF), a quant its bits per weight / 8 (llama.cpp's averages). ``tuneq validate`` prints it; the pipeline
checks free space against it (runner/pipeline/disk.py)."""

from __future__ import annotations

import errno
from collections.abc import Sequence

GB = 10**9
# Average bits per weight of llama.cpp's quant types (token embeddings and output kept wider included).
_QUANT_BITS = {
    "f16": 16.0, "bf16": 16.0, "q8_0": 8.5, "q6_k": 6.6, "q5_k_m": 5.7, "q5_k_s": 5.5, "q5_1": 6.0,
    "q5_0": 5.5, "q4_k_m": 4.9, "q4_k_s": 4.6, "q4_1": 5.0, "q4_0": 4.5, "iq4_nl": 4.5, "iq4_xs": 4.3,
    "q3_k_l": 4.3, "q3_k_m": 3.9, "q3_k_s": 3.5, "iq3_m": 3.7, "iq3_s": 3.5, "iq3_xs": 3.3, "iq3_xxs": 3.1,
    "q2_k": 3.4, "tq2_0": 2.1, "tq1_0": 1.7,
}  # fmt: skip
_UNKNOWN_BITS = 8.5  # a quant not in the table: assume the largest common one


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a full disk (or an exhausted quota)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def export_bytes(params: int, quants: Sequence[str]) -> dict[str, int]:
    """Bytes each export stage writes for a model of ``params`` parameters and the ``export.gguf`` list."""
    quantized = sum(params * _QUANT_BITS.get(q, _UNKNOWN_BITS) / 8 for q in quants if q != "f16")
    return {"merged": 2 * params, "gguf": 2 * params, "quantize": int(quantized)}


def size_text(n: float) -> str:
    """Bytes for people: ``3.1 GB``, ``850 MB``."""
    return f"{n / GB:.1f} GB" if n >= GB else f"{n / 10**6:.0f} MB"


def describe(params: int, quants: Sequence[str]) -> str:
    """The ``tuneq validate`` line: what the export stages will write in all, and by stage."""
    sizes = export_bytes(params, quants)
    parts = [f"merged 16-bit {size_text(sizes['merged'])}", f"f16 GGUF {size_text(sizes['gguf'])}"]
    if sizes["quantize"]:
        listed = " + ".join(q for q in quants if q != "f16")
        parts.append(f"{listed} {size_text(sizes['quantize'])}")
    return f"~{size_text(sum(sizes.values()))} written by export ({', '.join(parts)})"
