"""Quant names (``q4_k_m``, ``q8_0``, ...): llama.h's ftypes, from a copy, so that the spec loads no native
library (tests/test_quants.py checks the copy against the installed llama-cpp-python)."""

from __future__ import annotations

# llama.cpp refuses these without an importance matrix (llama-quantize says so too); tuneq computes none.
NEEDS_IMATRIX = frozenset({"iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "q2_k_s"})


# llama.h's ftypes as of llama-cpp-python 0.3.36 (pyproject's pin).
_LLAMA_H = {
    "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9, "q2_k": 10, "q3_k_s": 11, "q3_k_m": 12,
    "q3_k_l": 13, "q4_k_s": 14, "q4_k_m": 15, "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18, "iq2_xxs": 19,
    "iq2_xs": 20, "q2_k_s": 21, "iq3_xs": 22, "iq3_xxs": 23, "iq1_s": 24, "iq4_nl": 25, "iq3_s": 26,
    "iq3_m": 27, "iq2_s": 28, "iq2_m": 29, "iq4_xs": 30, "iq1_m": 31, "bf16": 32, "tq1_0": 36, "tq2_0": 37,
    "mxfp4_moe": 38, "nvfp4": 39, "q1_0": 40, "q2_0": 41,
}  # fmt: skip


def known_ftypes() -> dict[str, int]:
    """Every ``LLAMA_FTYPE_MOSTLY_*`` by lower-case name (``q4_k_m`` → 15)."""
    return dict(_LLAMA_H)


def check_quant(name: str) -> str:
    """``name`` in lower case if llama.cpp can write it without an importance matrix; else ValueError."""
    quant = name.lower()
    usable = sorted(set(known_ftypes()) - NEEDS_IMATRIX)
    if quant in NEEDS_IMATRIX:
        raise ValueError(
            f"'{name}' needs an importance matrix, which tuneq does not compute; "
            f"choose one of {', '.join(usable)}"
        )
    if quant not in known_ftypes():
        raise ValueError(f"unknown quant '{name}'; llama.cpp knows {', '.join(usable)}")
    return quant
