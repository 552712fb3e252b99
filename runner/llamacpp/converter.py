"""llama.cpp's converter scripts, taken from the llama-cpp-python sdist at install time, never at run time.

``python -m runner.llamacpp install`` downloads the sdist of the installed llama-cpp-python version with
pip (pip's cache makes repeats offline) and extracts ``vendor/llama.cpp``'s converters, their ``gguf-py``
and the vocab-only GGUFs of real tokenizers into ``<prefix>/share/tuneq/llama.cpp``. The pipeline only
reads from there: it never clones, downloads or builds llama.cpp.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tarfile
import tempfile
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

from runner.core.atomic import building

_KEEP_PREFIXES = (
    "convert_hf_to_gguf.py",
    "convert_lora_to_gguf.py",
    "conversion/",
    "gguf-py/",
    "models/ggml-vocab-",
    "LICENSE",
)
# tarfile's extraction filters came with Python 3.11.4 (Debian 12 has 3.11.2); without them only plain files
# and directories at relative paths inside the staging directory are extracted (see install).
_SAFE_EXTRACT: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
MISSING_HINT = "run `just setup` (it extracts llama.cpp's converter from the llama-cpp-python sdist)"


class ConverterMissing(RuntimeError):
    """The converter scripts are not installed."""


def converter_dir() -> Path:
    """Where the converter lives: ``$TUNEQ_LLAMA_CPP_DIR`` or ``<sys.prefix>/share/tuneq/llama.cpp``."""
    override = os.environ.get("TUNEQ_LLAMA_CPP_DIR")
    return Path(override) if override else Path(sys.prefix) / "share" / "tuneq" / "llama.cpp"


def converter_script(name: str = "convert_hf_to_gguf.py") -> Path:
    """The path of one converter script; raises :class:`ConverterMissing` with a fix when absent."""
    path = converter_dir() / name
    if not path.exists():
        raise ConverterMissing(f"{path} not found: {MISSING_HINT}")
    return path


def vocab_gguf(name: str) -> Path:
    """A vocab-only GGUF of a real tokenizer family shipped with llama.cpp (``qwen2``, ``llama-bpe``)."""
    return converter_dir() / "models" / f"ggml-vocab-{name}.gguf"


def convertible_architectures() -> frozenset[str]:
    """The ``architectures`` names the installed converter turns into a text model (empty when absent).

    Read from the converter's own source, not imported (that needs torch): every name passed to a
    ``@ModelBase.register(...)`` decorator of a class that is not a vision/audio projector (``MmprojModel``).
    """
    root = converter_dir()
    return _registered_architectures(
        root, (root / ".version").read_text() if (root / ".version").exists() else ""
    )


@cache
def _registered_architectures(root: Path, _version: str) -> frozenset[str]:
    sources = [root / "convert_hf_to_gguf.py", *sorted((root / "conversion").glob("*.py"))]
    bases: dict[str, list[str]] = {}
    registered: dict[str, list[str]] = {}
    for source in sources:
        if not source.exists():
            continue
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            bases[node.name] = [ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases]
            for decorator in node.decorator_list:
                if (
                    isinstance(decorator, ast.Call)
                    and isinstance(decorator.func, ast.Attribute)
                    and decorator.func.attr == "register"
                    and ast.unparse(decorator.func.value) == "ModelBase"
                ):
                    names = [a.value for a in decorator.args if isinstance(a, ast.Constant)]
                    registered.setdefault(node.name, []).extend(n for n in names if isinstance(n, str))

    def projector(name: str, seen: frozenset[str] = frozenset()) -> bool:
        if name == "MmprojModel":
            return True
        return name not in seen and any(projector(b, seen | {name}) for b in bases.get(name, []))

    return frozenset(n for cls, names in registered.items() if not projector(cls) for n in names)


def install(dest: Path | None = None) -> Path:
    """Download the matching sdist with pip and extract the converter files into ``dest``."""
    dest = dest or converter_dir()
    wanted = version("llama_cpp_python")
    marker = dest / ".version"
    if marker.exists() and marker.read_text().strip() == wanted:
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                "llama-cpp-python",  # its sdist; build dependencies may be wheels (`:all:` builds them all)
                "-d",
                tmp,
                f"llama-cpp-python=={wanted}",
            ],
            check=True,
        )
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        with building(dest) as staging, tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                parts = member.name.split("/vendor/llama.cpp/", 1)
                keep = (
                    len(parts) == 2
                    and parts[1].startswith(_KEEP_PREFIXES)
                    and not parts[1].endswith((".inp", ".out"))
                    and ".." not in Path(parts[1]).parts
                )
                if keep and (member.isfile() or member.isdir()):
                    member.name = parts[1]
                    archive.extract(member, staging, **_SAFE_EXTRACT)
            (staging / ".version").write_text(wanted)
    return dest
