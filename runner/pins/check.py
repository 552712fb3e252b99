"""``python -m runner.pins.check``: do the image files, pyproject's pins and Unsloth's declared ranges agree?

Checks, each problem one line (exit code 1 when any):
- the Dockerfile and Containerfile.mirror (the registry-free build) each install the ``train``, ``gpu``
  and ``unsloth`` extras through ``python -m runner.pins`` and pin nothing (``name==version``) that pyproject
  pins differently;
- their torch (``ARG TORCH_VERSION``) fits pyproject's torch range and Unsloth's; the Dockerfile's torch
  index is the CUDA version of its base image (``cu130`` for ``CUDA_VERSION=13.0.x``);
- Containerfile.mirror's torch is the Dockerfile's, and its CUDA toolkit wheels (``CUDA_TOOLKIT``) are the
  same CUDA major.minor;
- every ``==`` pin of those extras fits the ranges that the installed unsloth and unsloth_zoo declare
  (their metadata must be the pinned versions: ``just setup`` first);
- the local environment has the pinned versions of what it installed (it shares the pins), and its torch
  (which ``just setup`` may take from the system python on a GPU machine) fits pyproject's and Unsloth's range.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from runner.pins import DOCKERFILE, MIRROR, build_args, extra

EXTRAS = ("train", "gpu", "unsloth")
_UNSLOTH = {"unsloth", "unsloth-zoo"}
Pins = dict[str, Requirement]
Ranges = dict[str, list[Requirement]]
# The image's platform, for evaluating the markers of Unsloth's requirements.
IMAGE_ENV = {"sys_platform": "linux", "platform_machine": "x86_64", "python_version": "3.12", "extra": ""}


def pyproject_pins() -> Pins:
    """The requirements of the pinned extras, by canonical name."""
    return {canonicalize_name(r.name): r for name in EXTRAS for r in map(Requirement, extra(name))}


def unsloth_ranges() -> Ranges:
    """What the installed unsloth and unsloth_zoo require on the image's platform, by canonical name."""
    ranges: Ranges = {}
    for dist in ("unsloth", "unsloth_zoo"):
        for req in map(Requirement, requires(dist) or []):
            known = ranges.setdefault(canonicalize_name(req.name), [])
            if (req.marker is None or req.marker.evaluate(IMAGE_ENV)) and all(
                k.specifier != req.specifier for k in known
            ):
                known.append(req)
    return ranges


def dockerfile_problems(text: str, pins: Pins, ranges: Ranges) -> list[str]:
    """What is wrong with the Dockerfile's pins."""
    problems = _image_file_problems("Dockerfile", text, pins, ranges)
    args = build_args(text)
    cuda, index = args.get("CUDA_VERSION", ""), args.get("TORCH_INDEX", "")
    wanted = "cu" + "".join(cuda.split(".")[:2])
    if "TORCH_VERSION" in args and not index.rstrip("/").endswith(wanted):
        problems.append(
            f"Dockerfile: TORCH_INDEX {index} does not match CUDA_VERSION {cuda} (want .../{wanted})"
        )
    return problems


def mirror_problems(text: str, dockerfile: str, pins: Pins, ranges: Ranges) -> list[str]:
    """What is wrong with Containerfile.mirror's pins, and where it differs from the Dockerfile's torch/CUDA."""
    problems = _image_file_problems(MIRROR.name, text, pins, ranges)
    args, docker = build_args(text), build_args(dockerfile)
    torch, docker_torch = args.get("TORCH_VERSION"), docker.get("TORCH_VERSION")
    if torch and docker_torch and torch != docker_torch:
        problems.append(f"{MIRROR.name}: torch=={torch} but the Dockerfile installs torch=={docker_torch}")
    toolkit, cuda = args.get("CUDA_TOOLKIT", ""), docker.get("CUDA_VERSION", "")
    if toolkit.split(".")[:2] != cuda.split(".")[:2]:
        problems.append(
            f"{MIRROR.name}: CUDA_TOOLKIT {toolkit} is not the Dockerfile's CUDA {cuda} (same major.minor wanted)"
        )
    return problems


def _image_file_problems(label: str, text: str, pins: Pins, ranges: Ranges) -> list[str]:
    """An image file installs the pinned extras through `python -m runner.pins`, pins nothing else and a torch in range."""
    problems = [
        f"{label}: does not install the '{name}' extra through `python -m runner.pins`"
        for name in EXTRAS
        if not re.search(rf"-m runner\.pins {name}\b", text)
    ]
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for name, ver in re.findall(r"\b([A-Za-z0-9][A-Za-z0-9_.-]*)==([0-9][^\s\"'$`)]*)", code):
        pin = pins.get(canonicalize_name(name))
        if pin is not None and not pin.specifier.contains(ver, prereleases=True):
            problems.append(f"{label}: {name}=={ver} but pyproject says {pin}")
    torch = build_args(text).get("TORCH_VERSION")
    if torch is None:
        return [*problems, f"{label}: no ARG TORCH_VERSION"]
    problems += _fit(f"{label} torch=={torch}", "torch", torch, [pins["torch"]] if "torch" in pins else [])
    problems += _fit(f"{label} torch=={torch}", "torch", torch, ranges.get("torch", []), "Unsloth")
    return problems


def pin_problems(pins: Pins, ranges: Ranges) -> list[str]:
    """Exact pins outside Unsloth's ranges; unsloth's metadata not being the pinned version."""
    problems = []
    for name, pin in pins.items():
        exact = _exact(pin)
        if exact is None:
            continue
        if name in _UNSLOTH:
            problems += _installed(name, exact, "its ranges were read from another version")
        problems += _fit(f"pyproject {pin}", name, exact, ranges.get(name, []), "Unsloth")
    return problems


def environment_problems(pins: Pins) -> list[str]:
    """Installed packages of the local environment that differ from their exact pin."""
    return [
        problem
        for name, pin in pins.items()
        if (exact := _exact(pin)) and name not in _UNSLOTH
        for problem in _installed(name, exact, "run `just setup`")
    ]


def torch_problems(pins: Pins, ranges: Ranges) -> list[str]:
    """The installed torch outside pyproject's or Unsloth's range."""
    try:
        have = version("torch")
    except PackageNotFoundError:
        return []
    what = f"installed torch {have}"
    return [
        *_fit(what, "torch", have, [pins["torch"]] if "torch" in pins else []),
        *_fit(what, "torch", have, ranges.get("torch", []), "Unsloth"),
    ]


def check(dockerfile: Path = DOCKERFILE, mirror: Path = MIRROR) -> list[str]:
    """Every problem found."""
    pins = pyproject_pins()
    try:
        ranges = unsloth_ranges()
    except PackageNotFoundError:
        return ["unsloth is not installed here, so its declared ranges cannot be read: run `just setup`"]
    return [
        *dockerfile_problems(dockerfile.read_text(), pins, ranges),
        *mirror_problems(mirror.read_text(), dockerfile.read_text(), pins, ranges),
        *pin_problems(pins, ranges),
        *environment_problems(pins),
        *torch_problems(pins, ranges),
    ]


def _exact(req: Requirement) -> str | None:
    specs = list(req.specifier)
    return specs[0].version if len(specs) == 1 and specs[0].operator == "==" else None


def _fit(what: str, name: str, ver: str, reqs: Iterable[Requirement], whose: str = "pyproject") -> list[str]:
    return [
        f"{what} is outside {whose}'s range {name}{r.specifier}"
        for r in reqs
        if r.specifier and not r.specifier.contains(Version(ver).public, prereleases=True)
    ]


def _installed(name: str, exact: str, fix: str) -> list[str]:
    try:
        have = version(name)
    except PackageNotFoundError:
        return []
    return [] if Version(have) == Version(exact) else [f"installed {name} {have} != pinned {exact}: {fix}"]


def main() -> int:
    """Print the problems (or a one-line all-clear); exit code 1 when there are any."""
    problems = check()
    for problem in problems:
        print(problem)
    if not problems:
        print(
            f"pins agree: Dockerfile, {MIRROR.name}, pyproject extras {', '.join(EXTRAS)}, unsloth {version('unsloth')}"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
