"""``python -m runner.llamacpp install`` extracts the converter from llama-cpp-python's sdist, for every user.

A stand-in sdist of the installed version (setuptools-built metadata, the converter files under
``vendor/llama.cpp/``) is served to the real ``pip download`` from a local directory, offline.
"""

from __future__ import annotations

import io
import stat
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest

from runner.llamacpp import converter

PYPROJECT = """[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"
[project]
name = "llama_cpp_python"
version = "{v}"
"""


def _sdist(where: Path) -> None:
    """``llama_cpp_python-<installed version>.tar.gz`` holding a converter, its gguf-py and a file not kept."""
    ver = version("llama_cpp_python")
    top = f"llama_cpp_python-{ver}"
    files = {
        "pyproject.toml": PYPROJECT.format(v=ver),
        "vendor/llama.cpp/convert_hf_to_gguf.py": "print('converter')\n",
        "vendor/llama.cpp/gguf-py/gguf/__init__.py": "",
        "vendor/llama.cpp/README.md": "not kept\n",
    }
    with tarfile.open(where / f"{top}.tar.gz", "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("filters", [True, False], ids=["tarfile-filters", "python-3.11.2"])
def test_install_extracts_the_converter_readable_by_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filters: bool
) -> None:
    index = tmp_path / "index"
    index.mkdir()
    _sdist(index)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")  # pip's inverted flag: no isolation, offline
    if not filters:  # Debian 12's Python 3.11.2 has no tarfile extraction filters
        monkeypatch.setattr(converter, "_SAFE_EXTRACT", {})
    dest = converter.install(tmp_path / "share" / "llama.cpp")
    assert (dest / "convert_hf_to_gguf.py").read_text() == "print('converter')\n"
    assert (dest / "gguf-py" / "gguf" / "__init__.py").exists()
    assert not (dest / "README.md").exists()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755  # a container's non-root user reads it
