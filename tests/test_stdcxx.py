"""The system libstdc++ is in the global symbol scope once the pipeline is imported, ahead of llama.cpp's
libraries; the CLI and the TUI (which never load llama.cpp) do not load it."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc symbol scopes")

PROBE = """
import ctypes
def where(lib):
    try:
        return ctypes.cast(getattr(lib, "_ZNSt6locale7classicEv"), ctypes.c_void_p).value
    except AttributeError:
        return None
print(where(ctypes.CDLL(None)))
{imports}
print(where(ctypes.CDLL(None)), where(ctypes.CDLL("libstdc++.so.6")))
"""


def _global_lookups(imports: str) -> list[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE.format(imports=imports)], capture_output=True, text=True, check=True
    ).stdout.split()


def test_importing_the_pipeline_puts_libstdcxx_in_the_global_scope() -> None:
    before, after, system = _global_lookups("import runner.pipeline")
    assert before == "None"  # a bare interpreter has no C++ runtime in its global scope
    assert after == system  # the package loads nothing C++ itself: only share_libstdcxx puts it there


def test_llama_cpp_loaded_afterwards_does_not_take_the_lookups() -> None:
    _, after, system = _global_lookups("import runner.pipeline\nimport llama_cpp")
    assert after == system  # std:: lookups by any later library (libllama, torch) find libstdc++.so.6


def test_the_cli_the_tui_and_the_spec_leave_the_global_scope_alone() -> None:
    imports = "import runner, runner.cli, runner.worker.loop, tui.app\nfrom runner.spec import load_spec"
    _, after, _ = _global_lookups(imports)
    assert after == "None"
