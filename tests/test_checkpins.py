"""``just check-pins``: the Dockerfile, pyproject's pins and Unsloth's declared ranges."""

from __future__ import annotations

from packaging.requirements import Requirement

from runner.checkpins import (
    DOCKERFILE,
    check,
    dockerfile_problems,
    pin_problems,
    pyproject_pins,
    unsloth_ranges,
)

GOOD = DOCKERFILE.read_text()


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
    text = GOOD.replace("$(python3 runner/pins.py gpu)", "trl==1.16.0")
    assert dockerfile_problems(text, pyproject_pins(), unsloth_ranges()) == [
        "Dockerfile: does not install the 'gpu' extra through runner/pins.py",
        "Dockerfile: trl==1.16.0 but pyproject says trl==1.15.0",
    ]


def test_pin_outside_unsloth_range() -> None:
    pins = {"trl": Requirement("trl==1.16.0"), "datasets": Requirement("datasets==4.8.5")}
    assert pin_problems(pins, unsloth_ranges()) == [
        "pyproject trl==1.16.0 is outside Unsloth's range trl!=0.19.0,<=1.15.0,>=0.18.2",
    ]
