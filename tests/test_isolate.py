"""Native crashes in llama.cpp work become stage failures instead of killing the pipeline."""

from __future__ import annotations

import os

import pytest

from runner.pipeline.context import StageFailed
from runner.pipeline.isolate import call_in_child


def test_result_comes_back() -> None:
    assert call_in_child("sum", sum, [1, 2, 3]) == 6


def test_exception_is_re_raised() -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        call_in_child("parse", int, "not a number")


def test_crash_becomes_a_stage_failure() -> None:
    with pytest.raises(StageFailed, match=r"the test crashed inside llama\.cpp \(signal SIGABRT\)"):
        call_in_child("the test", os.abort)
