"""Files of a ship folder: hard-links (copies across file systems) and ``SHA256SUMS``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from runner.core.checksum import sha256_file

SUMS = "SHA256SUMS"


def link_or_copy(src: Path, dst: Path) -> str:
    """Hard-link ``src`` to ``dst`` (replacing it), or copy where a link is impossible; says which."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
        return "linked"
    except OSError:
        shutil.copy2(src, dst)
        return "copied"


def write_sums(folder: Path) -> None:
    """``SHA256SUMS`` of every other file in ``folder``, in ``sha256sum -c`` format."""
    lines = [
        f"{sha256_file(p)}  {p.name}\n" for p in sorted(folder.iterdir()) if p.is_file() and p.name != SUMS
    ]
    (folder / SUMS).write_text("".join(lines))


def verify_sums(folder: Path) -> list[str]:
    """Files listed in ``folder/SHA256SUMS`` that are missing or differ (empty when all match)."""
    bad = []
    for line in (folder / SUMS).read_text().splitlines():
        digest, name = line.split("  ", 1)
        path = folder / name
        if not path.is_file() or sha256_file(path) != digest:
            bad.append(name)
    return bad
