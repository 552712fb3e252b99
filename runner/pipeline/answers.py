"""Greedy answers from a transformers checkpoint, prompted through a given chat template.

Used for the "before" column (the base model) and the merged model, so they can be set beside the
GGUF's answers from the smoke test. Same decoding as there: greedy, ``max_tokens`` new tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def answer_with_transformers(
    model_dir: Path,
    prompts: list[str],
    max_tokens: int,
    chat_template: str | None = None,
    trust_remote_code: bool = False,
) -> list[dict[str, Any]]:
    """Each prompt's answer, ``finish_reason`` ("stop" on EOS, else "length") and token count.

    ``chat_template`` replaces the tokenizer's own (the base model is prompted as the job's export is).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from runner.dataset.templates import generation_prompt_ids

    tokenizer: Any = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=trust_remote_code)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype="auto", trust_remote_code=trust_remote_code
    )
    model.to(device).eval()
    eos = model.generation_config.eos_token_id
    stops = {*(eos if isinstance(eos, list) else [eos]), tokenizer.eos_token_id} - {None}
    results = []
    for prompt in prompts:
        input_ids = torch.tensor([generation_prompt_ids(tokenizer, prompt, chat_template)], device=device)
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id or min(stops),
            )
        new = out[0, input_ids.shape[1] :].tolist()
        stopped = bool(new) and new[-1] in stops
        results.append(
            {
                "answer": tokenizer.decode(new, skip_special_tokens=True),
                "finish_reason": "stop" if stopped else "length",
                "completion_tokens": len(new) - stopped,  # as llama.cpp counts: without the EOS
            }
        )
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return results
