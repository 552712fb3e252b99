"""Files of a ship folder: hard-links (copies across file systems) and its checksums (:data:`SUMS`).

A file is linked or copied under a temporary name beside its final one and renamed once complete, so a
full disk never leaves a truncated file under the final name."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from runner.core.atomic import replaced, write_atomic
from runner.core.checksum import sha256_file
from runner.core.rundir import SUMS


def link_or_copy(src: Path, dst: Path) -> str:
    """Hard-link ``src`` to ``dst`` (replacing it: its space is freed first), or copy where a link is
    impossible; says which. On an error (a full disk) neither ``dst`` nor a partial file is left."""
    dst.unlink(missing_ok=True)
    with replaced(dst) as partial:
        try:
            os.link(src, partial)
            return "linked"
        except OSError:
            shutil.copy2(src, partial)
            return "copied"


def write_sums(folder: Path) -> None:
    """``SHA256SUMS`` of every other file in ``folder``, in ``sha256sum -c`` format."""
    lines = [
        f"{sha256_file(p)}  {p.name}\n" for p in sorted(folder.iterdir()) if p.is_file() and p.name != SUMS
    ]
    write_atomic(folder / SUMS, "".join(lines))


def verify_sums(folder: Path) -> list[str]:
    """Files listed in ``folder/SHA256SUMS`` that are missing or differ (empty when all match)."""
    bad = []
    for line in (folder / SUMS).read_text().splitlines():
        digest, name = line.split("  ", 1)
        path = folder / name
        if not path.is_file() or sha256_file(path) != digest:
            bad.append(name)
    return bad
