"""jobs/smollm2-capitals-json.toml end to end: a real trained model learns a format on 2 CPU cores.

Runs ``tuneq run`` once (a few minutes) and checks what its report must show on real weights.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, run_job_file

from runner.core.events import Log, read_events

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]  # ~4 min idle; 20+ min on busy shared cores
JSON_ANSWER = re.compile(r'^\s*\{"country": "[^"]+", "capital": "[^"]+"\}\s*$')


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return run_job_file(ROOT / "jobs" / "smollm2-capitals-json.toml", tmp_path_factory.mktemp("smollm2"))


def test_training_taught_the_format_and_the_answers_stop(run: tuple[Path, dict[str, Any]]) -> None:
    _, report = run
    fid = report["fidelity"]
    assert report["ok"] and fid["ok"]
    assert fid["eval_loss"]["after"] < fid["eval_loss"]["before"] / 2
    for row in fid["answers"]["rows"]:
        # the base model answers in prose, the fine-tune in the trained JSON; both finish on <|im_end|>
        assert not JSON_ANSWER.match(row["before"]["answer"]), row["before"]
        for after in (row["merged"], row["gguf"]):
            assert JSON_ANSWER.match(after["answer"]) and after["finish_reason"] == "stop", after


def test_quant_perplexities_on_held_out_answers_and_general_text(run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, report = run
    fid = report["fidelity"]
    held_out = {f["quant"]: f for f in fid["perplexity"]["files"]}
    assert list(held_out) == ["f16", "q8_0", "q4_k_m"]
    assert held_out["q4_k_m"]["increase"] == pytest.approx(
        held_out["q4_k_m"]["ppl"] / held_out["f16"]["ppl"] - 1
    )
    general = {f["quant"]: f for f in fid["general_text"]["files"]}
    assert list(general) == ["f16", "q8_0", "q4_k_m"] and set(fid["general_text"]["tokens"]) == {"en", "zh"}
    # a trained model: a random one of this shape scores ~78,000 on English; 4 bits cost it something
    assert general["f16"]["en"] < 100 and general["f16"]["zh"] < 1000
    assert general["q4_k_m"]["en_increase"] > general["q8_0"]["en_increase"] - 0.01
    eval_md = (run_dir / "eval.md").read_text()
    assert "## Perplexity on general text" in eval_md and "| en | vs f16 | zh | vs f16 |" in eval_md
    assert "### Perplexity on general text" in (run_dir / "ship" / "README.md").read_text()


def test_the_gguf_stage_checked_tokenizer_parity(run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, _ = run
    parity = json.loads((run_dir / ".stages" / "gguf.json").read_text())["result"]["tokenizer_parity"]
    assert parity["gguf"] == "model gpt2, pre-tokenizer smollm, 48900 merges" and parity["eos"] == 2
    logs = [e.message for e in read_events(run_dir / "events.jsonl") if isinstance(e, Log)]
    assert any(m.startswith("tokenizer parity: ") for m in logs)
