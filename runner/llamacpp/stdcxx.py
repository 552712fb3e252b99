"""One C++ runtime per process: the system libstdc++ joins the global symbol scope before llama.cpp does.

llama-cpp-python loads libllama with ``RTLD_GLOBAL``. The CUDA build of it made on the H100 machine had a
copy of libstdc++ linked into ``libggml-cuda.so`` and exported from there. libllama, and any C++ library
loaded after it (torch), then bound some ``std::`` symbols (locale, stringstream) to that copy and others
to the system ``libstdc++.so.6``; an object made by one copy and used or freed by the other crashed the
process (SIGSEGV in ``llama_model::print_info`` while loading a model; abort in ``free`` when torch was
imported after llama_cpp). With the system library in the global scope first, every lookup finds it.
"""

from __future__ import annotations

import ctypes
import sys


def share_libstdcxx() -> bool:
    """Load ``libstdc++.so.6`` with ``RTLD_GLOBAL`` (Linux only); False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL("libstdc++.so.6", mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return False
    return True
