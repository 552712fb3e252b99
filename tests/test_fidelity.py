"""Fidelity: perplexity of real GGUF files (the tiny model, converted and quantized here), limits, losses."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from runner.dataset.templates import IGNORE
from runner.llamacpp.converter import converter_script
from runner.models.resolve import resolve_base
from runner.pipeline.perplexity import Row, general_text_rows, perplexities, perplexity
from runner.pipeline.stages.fidelity import eval_loss_summary, limit_problems, ppl_limit
from runner.pipeline.stages.quantize import quantize_file
from runner.spec.model import ExportSpec
from runner.spec.quants import known_ftypes

DATA = Path(__file__).resolve().parent.parent / "jobs" / "data" / "medical-cot-tiny.jsonl"


@pytest.fixture(scope="session")
def tiny_ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The built-in tiny model as f16, Q8_0 and Q4_K_M GGUF files (converted once per session)."""
    out = tmp_path_factory.mktemp("gguf")
    f16 = out / "tiny-f16.gguf"
    subprocess.run(
        [
            sys.executable,
            str(converter_script()),
            resolve_base("tuneq:tiny-llama"),
            "--outtype",
            "f16",
            "--outfile",
            str(f16),
        ],
        check=True,
        capture_output=True,
    )
    files = {"f16": f16}
    for quant in ("q8_0", "q4_k_m"):
        files[quant] = out / f"tiny-{quant.upper()}.gguf"
        quantize_file(f16, files[quant], known_ftypes()[quant], threads=2)
    return files


@pytest.fixture(scope="session")
def rows() -> list[Row]:
    """Question → answer rows in the tiny model's tokens; only the answer carries labels."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_base("tuneq:tiny-llama"))
    found = []
    for line in DATA.read_text().splitlines()[:8]:
        example = json.loads(line)
        prompt = tokenizer(example["Question"] + "\n")["input_ids"]
        answer = tokenizer(example["Response"], add_special_tokens=False)["input_ids"] + [
            tokenizer.eos_token_id
        ]
        found.append(Row(prompt + answer, [IGNORE] * len(prompt) + answer))
    return found


def test_quant_ordering_on_the_same_tokens(tiny_ggufs: dict[str, Path], rows: list[Row]) -> None:
    scores = {quant: perplexity(path, rows) for quant, path in tiny_ggufs.items()}
    assert len({s.tokens for s in scores.values()}) == 1
    assert scores["f16"].tokens == sum(1 for r in rows for label in r.labels[1:] if label != IGNORE)
    tolerance = 1.002  # quantization noise can help by a hair; it must not help more than that
    assert scores["f16"].ppl <= scores["q8_0"].ppl * tolerance
    assert scores["q8_0"].ppl <= scores["q4_k_m"].ppl * tolerance
    assert scores["q4_k_m"].ppl < scores["f16"].ppl * 1.5


def test_f16_perplexity_matches_transformers_on_completion_tokens(
    tiny_ggufs: dict[str, Path], rows: list[Row]
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolve_base("tuneq:tiny-llama"), dtype=torch.float32)
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            labels = torch.tensor([row.labels])
            loss = model(input_ids=torch.tensor([row.input_ids]), labels=labels).loss
            n = int((labels[0, 1:] != IGNORE).sum())
            total, count = total + float(loss) * n, count + n
    assert perplexity(tiny_ggufs["f16"], rows).ppl == pytest.approx(math.exp(total / count), rel=0.01)


def test_rows_longer_than_one_decode_chunk_score_the_same(
    tiny_ggufs: dict[str, Path], rows: list[Row], monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = perplexity(tiny_ggufs["f16"], rows)
    monkeypatch.setattr("runner.pipeline.perplexity.CHUNK", 16)  # every row spans several decode calls
    assert max(len(r.input_ids) for r in rows) > 16
    chunked = perplexity(tiny_ggufs["f16"], rows)
    assert chunked.tokens == whole.tokens
    assert chunked.ppl == pytest.approx(whole.ppl, rel=1e-3)


def test_general_text_is_scored_per_language_in_one_load(
    tiny_ggufs: dict[str, Path], rows: list[Row]
) -> None:
    from transformers import AutoTokenizer

    general = general_text_rows(AutoTokenizer.from_pretrained(resolve_base("tuneq:tiny-llama")))
    assert set(general) == {"en", "zh"}
    scores = perplexities(tiny_ggufs["f16"], {**general, "eval": rows})
    for lang, [row] in general.items():
        assert scores[lang].tokens == len(row.input_ids) - 1 > 100  # every token after the first
    assert scores["eval"] == perplexity(tiny_ggufs["f16"], rows)


def test_rows_without_labels_are_refused(tiny_ggufs: dict[str, Path], rows: list[Row]) -> None:
    with pytest.raises(ValueError, match="no labelled token"):
        perplexity(tiny_ggufs["f16"], [Row(rows[0].input_ids, [IGNORE] * len(rows[0].input_ids))])


def _table(increase: float) -> dict[str, object]:
    return {
        "skipped": None,
        "max_increase": 0.05,
        "limit_source": "export.max_ppl_increase",
        "files": [
            {"quant": "f16", "ppl": 4.0, "increase": 0.0},
            {"quant": "q4_k_m", "ppl": 4.0 * (1 + increase), "increase": increase},
        ],
    }


def test_limit_names_the_quant_and_the_figures() -> None:
    assert limit_problems(_table(0.04)) == []
    [problem] = limit_problems(_table(0.08))
    assert (
        "q4_k_m perplexity 4.3200 is +8.00% over f16 4.0000 (limit +5%, export.max_ppl_increase)" in problem
    )


def test_default_limit_depends_on_model_size() -> None:
    assert ppl_limit(ExportSpec(), 7_000_000_000) == (0.05, "default for models of 1B parameters or more")
    assert ppl_limit(ExportSpec(), 2_000_000)[0] == 0.10
    assert ppl_limit(ExportSpec(max_ppl_increase=0.2), 7_000_000_000) == (0.2, "export.max_ppl_increase")


def test_eval_loss_summary_says_when_training_did_not_help() -> None:
    assert eval_loss_summary({"eval_loss_before": 2.0, "eval_loss": 1.5})["improved"] is True
    worse = eval_loss_summary({"eval_loss_before": 1.5, "eval_loss": 1.5})
    assert worse["improved"] is False and "did not improve" in worse["note"]
    assert "no eval split" in eval_loss_summary({"eval_loss": None})["note"]


def test_export_gguf_accepts_llama_cpp_ftypes_by_name() -> None:
    assert ExportSpec(gguf=["f16", "Q5_K_M", "q4_k_m"]).gguf == ["f16", "q5_k_m", "q4_k_m"]
    with pytest.raises(ValueError, match=r"unknown quant 'q4km'; llama.cpp knows .*q4_k_m"):
        ExportSpec(gguf=["q4km"])
    with pytest.raises(ValueError, match="needs an importance matrix"):
        ExportSpec(gguf=["iq2_xs"])
