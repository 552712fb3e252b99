"""``just check-pins``: the Dockerfile, Containerfile.mirror, pyproject's pins and Unsloth's declared ranges."""

from __future__ import annotations

from packaging.requirements import Requirement

from runner.pins.check import (
    DOCKERFILE,
    MIRROR,
    check,
    dockerfile_problems,
    mirror_problems,
    pin_problems,
    pyproject_pins,
    torch_problems,
    unsloth_ranges,
)

GOOD = DOCKERFILE.read_text()
GOOD_MIRROR = MIRROR.read_text()


def test_the_project_agrees() -> None:
    assert check() == []


def test_torch_outside_unsloth_range_and_wrong_cuda_index() -> None:
    text = GOOD.replace("ARG TORCH_VERSION=2.11.0", "ARG TORCH_VERSION=2.15.0").replace("/cu130", "/cu128")
    assert dockerfile_problems(text, pyproject_pins(), unsloth_ranges()) == [
        "Dockerfile torch==2.15.0 is outside pyproject's range torch<2.15,>=2.4",
        "Dockerfile torch==2.15.0 is outside Unsloth's range torch<2.15.0,>=2.4.0",
        "Dockerfile: TORCH_INDEX https://download.pytorch.org/whl/cu128 does not match CUDA_VERSION 13.0.1 "
        "(want .../cu130)",
    ]


def test_dockerfile_pin_that_disagrees_and_missing_extra() -> None:
    text = GOOD.replace("$(python3 -m runner.pins gpu)", "trl==1.16.0")
    assert dockerfile_problems(text, pyproject_pins(), unsloth_ranges()) == [
        "Dockerfile: does not install the 'gpu' extra through `python -m runner.pins`",
        "Dockerfile: trl==1.16.0 but pyproject says trl==1.15.0",
    ]


def test_pin_outside_unsloth_range() -> None:
    pins = {"trl": Requirement("trl==1.16.0"), "datasets": Requirement("datasets==4.8.5")}
    assert pin_problems(pins, unsloth_ranges()) == [
        "pyproject trl==1.16.0 is outside Unsloth's range trl!=0.19.0,<=1.15.0,>=0.18.2",
    ]


def test_mirror_build_shares_the_pins_torch_and_cuda() -> None:
    assert mirror_problems(GOOD_MIRROR, GOOD, pyproject_pins(), unsloth_ranges()) == []
    text = (
        GOOD_MIRROR.replace("ARG TORCH_VERSION=2.11.0", "ARG TORCH_VERSION=2.12.0")
        .replace("ARG CUDA_TOOLKIT=13.0.2", "ARG CUDA_TOOLKIT=12.9.1")
        .replace("$(python3 -m runner.pins unsloth)", "unsloth==2026.11.1")
    )
    assert mirror_problems(text, GOOD, pyproject_pins(), unsloth_ranges()) == [
        "Containerfile.mirror: does not install the 'unsloth' extra through `python -m runner.pins`",
        "Containerfile.mirror: unsloth==2026.11.1 but pyproject says unsloth==2026.10.9",
        "Containerfile.mirror: torch==2.12.0 but the Dockerfile installs torch==2.11.0",
        "Containerfile.mirror: CUDA_TOOLKIT 12.9.1 is not the Dockerfile's CUDA 13.0.1 (same major.minor wanted)",
    ]
    no_torch = GOOD_MIRROR.replace("ARG TORCH_VERSION=2.11.0", "ARG TORCH=2.11.0")
    assert mirror_problems(no_torch, GOOD, pyproject_pins(), unsloth_ranges()) == [
        "Containerfile.mirror: no ARG TORCH_VERSION"
    ]


def test_installed_torch_outside_the_ranges() -> None:
    """The environment's torch (a GPU machine's set-up may reuse the system's) must fit both ranges."""
    from importlib.metadata import version

    assert torch_problems(pyproject_pins(), unsloth_ranges()) == []
    have = version("torch")
    pins = {**pyproject_pins(), "torch": Requirement("torch>=99")}
    ranges = {**unsloth_ranges(), "torch": [Requirement("torch<1")]}
    assert torch_problems(pins, ranges) == [
        f"installed torch {have} is outside pyproject's range torch>=99",
        f"installed torch {have} is outside Unsloth's range torch<1",
    ]
