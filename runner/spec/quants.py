"""Quant names (``q4_k_m``, ``q8_0``, ...): the ftypes the installed llama-cpp-python lists."""

from __future__ import annotations

from functools import cache

_PREFIX = "LLAMA_FTYPE_MOSTLY_"
# llama.cpp refuses these without an importance matrix (llama-quantize says so too); tuneq computes none.
NEEDS_IMATRIX = frozenset({"iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq2_m", "q2_k_s"})


@cache
def known_ftypes() -> dict[str, int]:
    """Every ``LLAMA_FTYPE_MOSTLY_*`` of llama-cpp-python, by lower-case name (``q4_k_m`` → 15)."""
    import llama_cpp

    return {
        name.removeprefix(_PREFIX).lower(): int(getattr(llama_cpp, name))
        for name in dir(llama_cpp)
        if name.startswith(_PREFIX)
    }


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
