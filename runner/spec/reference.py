"""The job-file reference (docs/job-file.md), rendered from the schema so it cannot drift.

``python -m runner.spec.reference > docs/job-file.md``; a test checks the file is current.
"""

from __future__ import annotations

import json
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from runner.spec.model import JobSpec, SmokePrompt

_TABLES: list[tuple[str, type[BaseModel]]] = [
    ("top level", JobSpec),
    *(
        (f"[{name}]", field.annotation)
        for name, field in JobSpec.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    ),
    ("[[smoke.prompts]]", SmokePrompt),
]


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return " / ".join(f"`{json.dumps(a)}`" for a in get_args(annotation))
    if get_origin(annotation) in (Union, UnionType):
        return " or ".join(_type_name(a) for a in get_args(annotation))
    return str(getattr(annotation, "__name__", annotation)).replace("typing.", "").replace("NoneType", "none")


def _default(field: Any) -> str:
    if field.default_factory is not None:
        return f"`{json.dumps(field.default_factory())}`"
    if field.default is PydanticUndefined:
        return "**required**"
    return f"`{json.dumps(field.default)}`"


# One complete job per data format: (format, data file name, its first lines, the job file).
EXAMPLES: list[tuple[str, str, str, str]] = [
    (
        "alpaca",
        "alpaca.jsonl",
        '{"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"}',
        'name = "translate"\n[model]\nbase = "Qwen/Qwen2.5-0.5B-Instruct"\n'
        '[data]\nsource = "alpaca.jsonl"   # instruction (+ optional input) -> output\neval_split = 0.1\n',
    ),
    (
        "sharegpt",
        "chats.json",
        '[{"conversations": [{"from": "system", "value": "Answer briefly."}, '
        '{"from": "human", "value": "Capital of Peru?"}, {"from": "gpt", "value": "Lima."}]}]',
        'name = "chats"\n[model]\nbase = "Qwen/Qwen2.5-0.5B-Instruct"\n'
        '[data]\nsource = "chats.json"     # from: human/gpt/system; the gpt turns are trained\n'
        'format = "sharegpt"\n',
    ),
    (
        "messages",
        "messages.jsonl",
        '{"messages": [{"role": "user", "content": "2+2?"}, '
        '{"role": "assistant", "content": "4", "reasoning_content": "Two and two make four."}]}',
        'name = "math"\n[model]\nbase = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"\n'
        '[data]\nsource = "messages.jsonl" # role/content; reasoning_content goes inside <think>\n'
        'split = "train[:90%]"\neval_split = "train[90%:]"     # disjoint slices of the one file\n'
        '[template]\nstyle = "r1"\n',
    ),
    (
        "prompt_completion",
        "pairs.jsonl",
        '{"prompt": "Summarise: The meeting moved to Friday.", "completion": "Meeting now on Friday."}',
        'name = "summaries"\n[model]\nbase = "Qwen/Qwen2.5-0.5B-Instruct"\n'
        '[data]\nsource = "pairs.jsonl"\nformat = "prompt_completion"\n',
    ),
    (
        "columns",
        "medical.csv",
        "Question,Complex_CoT,Response\n"
        '"A child has a fever and a rash, what first?","Fever with rash: think of measles, check...",'
        '"Check vaccination status, then..."',
        'name = "medical"\n[model]\nbase = "unsloth/DeepSeek-R1-Distill-Llama-8B"\nload_in_4bit = true\n'
        '[data]\nsource = "medical.csv"    # a field holding a comma is in double quotes\n'
        'format = "columns"\n[data.columns]\nprompt = "Question"\nreasoning = "Complex_CoT"\n'
        'response = "Response"\n[template]\nstyle = "r1"\n'
        '[[smoke.prompts]]\nprompt = "A patient has chest pain, what first?"\nregex = "(?s)</think>.+"\n',
    ),
]

_GUIDE = """\
## Examples, one per data format

Each is a complete job file and the first row of its data (`tuneq validate` checks them in the tests).
With `format = "auto"` (the default) the format is told from the first row's columns: `messages`,
`conversations`, `instruction` + `output`, or `prompt` + `completion`; anything else needs
`format = "columns"` and a mapping, which validate suggests from the row's own column names.

{examples}
## Eval rows are never training rows

`eval_split = 0.1` holds out a seeded random 10% of the rows. A named split must take other rows than
`data.split`: a local file has one split (its name is ignored), so write disjoint slices
(`split = "train[:90%]"`, `eval_split = "train[90%:]"`); a hub dataset's other split
(`eval_split = "validation"`) is disjoint by the dataset's making. Validate refuses an overlap, naming the
rows, and prints how the eval rows are chosen; `report.json` (`data.eval_rows_from`) says it again.

## model.base

A hub id (`owner/name`), a built-in (`tuneq:...`), or a local directory as `save_pretrained` writes it
(`config.json`, `*.safetensors`, tokenizer files). A path (it starts with `/`, `.` or `~`, or exists beside
the job file) is taken from the job file's directory, like `data.source`; submit stores the absolute
path in `job.json`, so the run finds it from its own directory (and a container gets it mounted
read-only). A missing path, a folder without `config.json`, or a GGUF file is refused by validate.

### A GGUF as the base

Refused, on purpose. A GGUF is an export: its weights are quantized (Q4 stores about 4.5 bits a weight),
and training on them trains on rounded weights. transformers can de-quantize one (`gguf_file=`), which is
how the built-in `tuneq:smollm2-135m-instruct` is made from a Q4_1 GGUF; measured on it
(../shared/FACTS.md): it works and answers sensibly, "a little below the published one", and the
tokenizer rebuilt from the GGUF needed a fix before llama.cpp could convert it back (a Llama-style decoder
where the model uses GPT-2 byte-level BPE). Use the checkpoint the GGUF was made from (its model card
names it); if you only have the GGUF:

```python
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

folder, name = "path/to/dir", "model.Q4_K_M.gguf"
tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
model.hf_quantizer = None  # plain tensors now: save_pretrained refuses otherwise
del model.config.quantization_config
model.to(torch.bfloat16).save_pretrained("my-base")
tokenizer.save_pretrained("my-base")  # compare its token ids with the GGUF's before training
```

## Chat templates

Style `chat` uses the base model's own chat template. Every `tuneq validate` (and submit) checks that the
base has one, and renders the first 16 examples through it in a child process (about 2 s, no tokenizer
loaded): a template whose earlier turns change when a turn is added (so the trained tokens would not be
those the model is prompted with) is refused with the row. Not checked while the model's files are not
on disk (a hub model not yet downloaded).

## smoke.prompts

`[[smoke.prompts]]` entries are questions asked of the exported GGUF (`smoke.gguf`, default `q4_k_m`) with
llama-cpp-python, through the chat template embedded in it, greedy, at most `smoke.max_tokens` tokens.
Each answer must stop with the end-of-sequence token (`must_stop`), must not contain template tokens
(`<|im_end|>`, `<｜User｜>`, ...), and must contain every `must_contain` string and match `regex`
(Python `re.search`). A failed check fails the job; `smoke.json` lists each answer and each check with
what was found. With no prompts, only the embedded template is checked.

## Size estimates

`tuneq validate` prints the GPU memory the training needs (runner/models/vram.py, calibrated on H100
peaks) and what the export writes: 2 bytes a parameter for the merged model and the f16 GGUF, and each
quant tensor by tensor as llama.cpp picks its block types (the output head in Q6_K, half the layers'
`attn_v`/`ffn_down` in Q6_K for Q4_K_M, 32-wide types where rows are not a multiple of 256). The Q4_K_M
estimate matches llama.cpp's own count within 0.1% on SmolLM2-135M, a tiny Qwen2 with an untied head,
Qwen2.5-0.5B, and the 1.5B and 8B shapes; whole files come within 1% (SmolLM2 105 MB, Qwen2.5-0.5B
491 MB: tokenizer metadata is estimated). Other quant types use llama.cpp's average bits per weight
(within about 10%). A model whose `config.json` is not on disk is estimated from the shape tuneq knows
(the built-ins and the shipped jobs' hub models), else not at all.
"""


def _example_text(fmt: str, data: str, row: str, job: str) -> str:
    return f"### {fmt}\n\n`{data}`:\n\n```text\n{row}\n```\n\n```toml\n{job}```\n"


def render() -> str:
    """The reference as markdown."""
    lines = [
        "# Job file reference",
        "",
        "Generated from `runner/spec/model.py` by `python -m runner.spec.reference`. Every key, its type and",
        "default. Unknown keys are errors (with a suggestion); secrets are refused (use the environment).",
        "",
    ]
    for title, model in _TABLES:
        lines += [
            f"## {title}",
            "",
            (model.__doc__ or "").strip().splitlines()[0],
            "",
            "| key | type | default | meaning |",
            "|---|---|---|---|",
        ]
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                continue
            meaning = (field.description or "").replace("|", "\\|")
            kind = _type_name(field.annotation).replace("|", "\\|")
            lines.append(f"| `{name}` | {kind} | {_default(field)} | {meaning} |")
        lines.append("")
    examples = "\n".join(_example_text(*example) for example in EXAMPLES)
    return "\n".join(lines) + "\n" + _GUIDE.format(examples=examples)


if __name__ == "__main__":
    print(render(), end="")
