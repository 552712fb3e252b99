"""Quant names come from a copy of llama.h's ftypes: the spec never loads llama.cpp, and the copy matches
the installed llama-cpp-python."""

from __future__ import annotations

import pytest
from conftest import heavy_modules_after

from runner.spec.quants import known_ftypes


def test_the_copy_matches_the_installed_llama_cpp_python() -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    prefix = "LLAMA_FTYPE_MOSTLY_"
    installed = {
        n.removeprefix(prefix).lower(): int(getattr(llama_cpp, n))
        for n in dir(llama_cpp)
        if n.startswith(prefix)
    }
    assert known_ftypes() == installed


def test_checking_a_quant_loads_no_native_library() -> None:
    code = "from runner.spec.model import ExportSpec\nExportSpec(gguf=['f16', 'q8_0'])"
    assert heavy_modules_after(code, ("llama_cpp", "torch", "transformers")) == []
