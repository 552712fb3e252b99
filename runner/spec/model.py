"""The job file's typed schema: every key, its type, its default and its range, in one place.

Key names follow the libraries users already know (Unsloth's ``from_pretrained``/``get_peft_model``,
TRL's ``SFTConfig``, PEFT's ``LoraConfig``), so a notebook's settings move over one to one.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from runner.spec.quants import check_quant

Quant = Annotated[str, AfterValidator(check_quant)]
NAME_RULE = (
    "1 to 64 characters: letters and digits in any script, spaces, '-', '_' and '.', not starting with "
    '\'.\', \'-\' or a space (e.g. "medical-r1", "my job", "日本語ジョブ")'
)
SMOKE_MAX_CONTEXT = 8192  # the smoke test's context never exceeds this many tokens
MAX_SMOKE_PROMPTS = 100  # a smoke test is a handful of checks, run after the whole pipeline
CHARS_PER_TOKEN_LIMIT = 16  # a prompt longer than this many characters per token of room cannot fit
DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def check_job_name(name: str) -> str:
    """A job name as written, or ``ValueError`` saying in words what is wrong and what a name may be."""
    bad = sorted({c for c in name if not (c in " -_." or unicodedata.category(c)[0] in "LNM")})
    if "/" in bad or "\\" in bad:
        problem = "a name may not hold a path separator ('/' or '\\')"
    elif bad:
        shown = ", ".join(repr(c) if c.isprintable() else f"U+{ord(c):04X}" for c in bad)
        problem = f"{shown} not allowed in a name"
    elif not 1 <= len(name) <= 64:
        problem = f"the name has {len(name)} characters"
    elif name.startswith((".", "-", " ")) or name.endswith(" "):
        problem = "a name may not start with '.', '-' or a space, nor end with a space"
    elif ".." in name:
        problem = "a name may not hold '..'"
    else:
        return name
    raise ValueError(f"{problem}; a job name is {NAME_RULE}")


def file_stem(name: str) -> str:
    """A valid job name as a file-name stem: Unicode NFC, spaces as '-' (no quoting needed in a shell)."""
    return unicodedata.normalize("NFC", name).replace(" ", "-")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Section):
    """``[model]``: the base model and how it is loaded."""

    base: str = Field(
        description="hub id 'owner/name', a local model directory (config.json, *.safetensors, tokenizer; "
        "relative to the job file), or a built-in such as 'tuneq:tiny-llama'; not a GGUF file"
    )
    revision: str | None = Field(None, description="hub branch, tag or commit of the base model")
    max_seq_length: int = Field(
        2048,
        ge=16,
        le=262_144,
        description="tokens per example; longer examples are truncated (validate counts those left with nothing to learn)",
    )
    load_in_4bit: bool = Field(
        False, description="QLoRA: load the base in 4-bit (GPU; on CPU Unsloth loads 16-bit instead)"
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="compute dtype; auto picks bfloat16 where supported"
    )
    trust_remote_code: bool = Field(False, description="allow model code from the hub")


class DataSpec(_Section):
    """``[data]``: where examples come from and how their fields map onto a conversation."""

    source: str = Field(
        description="a local .json/.jsonl/.csv/.parquet file (relative to the job file) or a hub id"
    )
    subset: str | None = Field(None, description="the hub dataset's configuration name, e.g. 'zh'")
    split: str = Field(
        "train", description="hub split expression, also slices local files: 'train[0:500]', 'train[:10%]'"
    )
    format: Literal["auto", "alpaca", "sharegpt", "messages", "prompt_completion", "columns"] = Field(
        "auto",
        description="row format; auto detects messages/conversations/instruction+output/prompt+completion",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="for format='columns': prompt/reasoning/response/system -> column name",
    )
    eval_split: str | float | None = Field(
        None,
        description="rows held out for eval, never trained on: a fraction of the rows (0.05), a slice disjoint "
        "from data.split ('train[90%:]' with split 'train[:90%]'), or another hub split ('validation')",
    )
    shuffle: bool = Field(
        True, description="shuffle rows (seeded by train.seed) before the eval split is taken"
    )

    @model_validator(mode="after")
    def _columns_fit_format(self) -> DataSpec:
        allowed = {"prompt", "reasoning", "response", "system"}
        unknown = sorted(set(self.columns) - allowed)
        if unknown:
            raise ValueError(f"unknown role(s) in columns: {unknown}; use {sorted(allowed)}")
        if self.format == "columns" and not {"prompt", "response"} <= set(self.columns):
            raise ValueError("format 'columns' needs at least columns.prompt and columns.response")
        if isinstance(self.eval_split, float) and not 0 < self.eval_split < 0.5:
            raise ValueError("eval_split as a fraction must be between 0 and 0.5 (e.g. 0.05)")
        return self


class TemplateSpec(_Section):
    """``[template]``: how one example becomes training text and which tokens carry the loss."""

    style: Literal["chat", "r1", "alpaca", "custom"] = Field(
        "chat",
        description="chat: the model's template; r1: DeepSeek-R1 training format keeping <think>; alpaca; custom",
    )
    system: str | None = Field(
        None,
        description="system prompt added to examples that have none; it ships as the default of the GGUF's "
        "template, the Modelfile's SYSTEM and llama-cli -sys",
    )
    prompt: str | None = Field(None, description="style 'custom': text before the answer, with {fields}")
    completion: str | None = Field(None, description="style 'custom': the trained part, with {fields}")

    @model_validator(mode="after")
    def _custom_needs_text(self) -> TemplateSpec:
        if self.style == "custom" and not (self.prompt and self.completion):
            raise ValueError("style 'custom' needs both template.prompt and template.completion")
        if self.style != "custom" and (self.prompt or self.completion):
            raise ValueError("template.prompt/completion are only used with style = 'custom'")
        return self


class LoraSpec(_Section):
    """``[lora]``: the adapter (names as in ``FastLanguageModel.get_peft_model``)."""

    r: int = Field(16, ge=1, le=1024, description="LoRA rank")
    lora_alpha: int = Field(16, ge=1, description="LoRA scaling (alpha / r)")
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the LoRA path")
    target_modules: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES),
        min_length=1,
        description="projections that get adapters",
    )
    bias: Literal["none", "all", "lora_only"] = Field("none", description="which biases train")
    use_gradient_checkpointing: bool | Literal["unsloth", "auto"] = Field(
        "auto",
        description="'unsloth' (offloaded), true, false, or 'auto': off on a GPU where the batch fits without it, "
        "else 'unsloth'",
    )
    random_state: int = Field(3407, description="seed of the adapter's initialisation")
    use_rslora: bool = Field(False, description="rank-stabilised scaling (alpha / sqrt(r))")


class TrainSpec(_Section):
    """``[train]``: the trainer (names as in TRL's ``SFTConfig``)."""

    per_device_train_batch_size: int = Field(2, ge=1, description="examples per step per GPU")
    gradient_accumulation_steps: int = Field(4, ge=1, description="steps summed per optimizer update")
    auto_batch: bool = Field(
        True,
        description="on a GPU, run the same effective batch (per-device x accumulation) in the fewest "
        "micro-batches that fit in free memory",
    )
    max_steps: int = Field(-1, ge=-1, description="-1: run num_train_epochs")
    num_train_epochs: float = Field(1.0, gt=0, description="passes over the data (used when max_steps is -1)")
    learning_rate: float = Field(2e-4, gt=0, lt=1, description="peak learning rate")
    warmup_steps: int = Field(0, ge=0, description="linear warmup steps")
    warmup_ratio: float = Field(
        0.0, ge=0, lt=1, description="warmup as a fraction of all steps (instead of warmup_steps)"
    )
    lr_scheduler_type: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"
    ] = Field("linear", description="learning-rate schedule")
    optim: Literal[
        "adamw_8bit", "adamw_torch", "adamw_torch_fused", "paged_adamw_8bit", "sgd", "adafactor"
    ] = Field("adamw_8bit", description="optimizer; 8-bit ones fall back to AdamW on CPU")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping")
    seed: int = Field(3407, description="seed for data order and training")
    logging_steps: int = Field(1, ge=1, description="progress event every N steps")
    save_steps: int = Field(50, ge=1, description="checkpoint every N steps (resume point)")
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept")
    eval_steps: int | None = Field(None, ge=1, description="eval loss every N steps (needs data.eval_split)")
    packing: bool = Field(False, description="pack short examples into full-length rows")
    padding_free: bool | None = Field(
        None, description="batch without padding (flattened sequences); default: on unless packing"
    )
    dataset_num_proc: int | None = Field(None, ge=1, description="processes for dataset preparation")
    report_to: Literal["none", "wandb", "tensorboard"] = Field(
        "none", description="metrics sink; wandb reads WANDB_API_KEY from the environment"
    )

    @property
    def flat_batches(self) -> bool:
        """Whether batches are flattened without padding (explicitly, or by default when not packing)."""
        return not self.packing if self.padding_free is None else self.padding_free

    @model_validator(mode="after")
    def _one_length(self) -> TrainSpec:
        if self.packing and self.padding_free:
            raise ValueError("choose packing or padding_free, not both")
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError("set warmup_steps or warmup_ratio, not both")
        return self


class ExportSpec(_Section):
    """``[export]``: what the run hands over."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="artifact file stem")
    gguf: list[Quant] = Field(
        default_factory=lambda: ["f16", "q4_k_m"],
        min_length=1,
        description="GGUF files to write: f16 and any llama.cpp ftype by name (q8_0, q5_k_m, q4_k_m, ...)",
    )
    lora_gguf: bool = Field(True, description="also write the adapter as GGUF for llama-cli --lora")
    fidelity: bool = Field(True, description="measure before/after answers, eval loss and GGUF perplexities")
    max_ppl_increase: float | None = Field(
        None,
        gt=0,
        description="limit on each quant's perplexity increase over f16 (0.05 = +5%); "
        "default 0.05 for models of 1B parameters or more, 0.10 below",
    )
    on_fidelity: Literal["fail", "warn"] = Field("fail", description="exceeding the limit fails or warns")
    ppl_rows: int = Field(200, ge=1, description="held-out rows scored for perplexity (the first N)")
    license: str | None = Field(None, min_length=1, description="the model card's license, e.g. 'apache-2.0'")

    @field_validator("gguf")
    @classmethod
    def _no_repeats(cls, gguf: list[str]) -> list[str]:
        if len(set(gguf)) != len(gguf):
            raise ValueError(f"a quant is listed twice: {gguf}")
        return gguf


class SmokePrompt(_Section):
    """One ``[[smoke.prompts]]`` entry: a question and what its answer must satisfy."""

    prompt: str = Field(
        min_length=1,
        description="the question asked through the embedded chat template; it must leave max_tokens of "
        "the context (max_seq_length + max_tokens, at most 8192 tokens) for the answer, checked before training",
    )
    must_contain: list[str] = Field(default_factory=list, description="strings the answer must contain")
    regex: str | None = Field(None, description="a regular expression the answer must match")
    must_stop: bool = Field(True, description="the answer must end with EOS before max_tokens")


class SmokeSpec(_Section):
    """``[smoke]``: the test of the quantized file with llama-cpp-python."""

    max_tokens: int = Field(256, ge=1, le=32_768, description="generation limit per prompt")
    gguf: Quant = Field("q4_k_m", description="the GGUF tested and given to Ollama (one of export.gguf)")
    prompts: list[SmokePrompt] = Field(
        default_factory=list,
        max_length=MAX_SMOKE_PROMPTS,
        description=f"the [[smoke.prompts]] entries below (at most {MAX_SMOKE_PROMPTS})",
    )


class RunSpec(_Section):
    """``[run]``: how the queue treats the job."""

    retries: int = Field(1, ge=0, le=20, description="automatic requeues after the worker dies mid-job")
    backend: Literal["local", "docker"] = Field("local", description="local process or docker container")
    gpus: int = Field(
        1,
        ge=0,
        description="GPUs the job trains on: 1, or 0 for CPU (a job trains on one GPU; several GPUs run "
        "several jobs side by side)",
    )
    image: str | None = Field(
        None, min_length=1, description="backend 'docker': the image (default: the worker's)"
    )

    @field_validator("gpus")
    @classmethod
    def _one_gpu_per_job(cls, gpus: int) -> int:
        if gpus > 1:  # Unsloth's single-process trainer uses one GPU: more would be rented and idle
            raise ValueError(
                "a job trains on one GPU (no data-parallel training yet), so the others would sit idle; "
                "set gpus = 1 and queue several jobs to use several GPUs"
            )
        return gpus

    @model_validator(mode="after")
    def _image_needs_docker(self) -> RunSpec:
        if self.image is not None and self.backend != "docker":
            raise ValueError("run.image is only used with backend = 'docker'")
        return self


NotifyState = Literal["succeeded", "failed", "cancelled", "interrupted"]
NOTIFY_STATES: tuple[NotifyState, ...] = ("succeeded", "failed", "cancelled", "interrupted")


class NotifySpec(_Section):
    """``[notify]``: word when the job ends, by a command and/or a webhook (an empty table sends nothing).

    Without this table the queue's default applies: the same ``[notify]`` table in ``notify.toml`` in the
    state directory. The worker sends it once per job end, in the background (docs/notify.md).
    """

    command: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="a program and its arguments, run without a shell; the job's id, name, state, tested "
        "GGUF and duration are in its environment (TUNEQ_JOB_ID, ...)",
    )
    url_env: str | None = Field(
        None,
        description="the environment variable that holds the webhook URL (the URL itself is a secret: "
        "it never goes into a file), e.g. 'TUNEQ_WEBHOOK'",
    )
    format: Literal["json", "ntfy", "slack"] = Field(
        "json", description="the webhook's JSON body: tuneq's fields, an ntfy message, or Slack's {text}"
    )
    on: list[NotifyState] = Field(
        default_factory=lambda: list(NOTIFY_STATES),
        description="the ends that notify ('interrupted': only once its retries are used up)",
    )
    timeout_s: float = Field(30.0, gt=0, le=600, description="the command or the POST is given up after this")

    @field_validator("url_env")
    @classmethod
    def _variable_name(cls, name: str | None) -> str | None:
        if name is None or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            return name
        if "://" in name:
            raise ValueError(
                "url_env names an environment variable, not the URL: put the URL in the worker's "
                'environment (e.g. TUNEQ_WEBHOOK) and write url_env = "TUNEQ_WEBHOOK"'
            )
        raise ValueError(
            "is not an environment variable name (letters, digits and '_', e.g. 'TUNEQ_WEBHOOK')"
        )


class NotifyDefaults(_Section):
    """``notify.toml`` in the state directory: the ``[notify]`` table of every job whose file has none."""

    notify: NotifySpec = Field(default_factory=NotifySpec)  # type: ignore[arg-type]


class JobSpec(_Section):
    """A whole job file."""

    name: Annotated[str, AfterValidator(check_job_name)] = Field(
        description="job name: letters and digits in any script, spaces, '-', '_', '.' (up to 64); "
        "also the default artifact file stem, with spaces as '-'",
    )
    description: str | None = Field(None, description="free text shown in listings")
    model: ModelSpec
    data: DataSpec
    template: TemplateSpec = Field(default_factory=TemplateSpec)  # type: ignore[arg-type]
    lora: LoraSpec = Field(default_factory=LoraSpec)  # type: ignore[arg-type]
    train: TrainSpec = Field(default_factory=TrainSpec)  # type: ignore[arg-type]
    export: ExportSpec = Field(default_factory=ExportSpec)  # type: ignore[arg-type]
    smoke: SmokeSpec = Field(default_factory=SmokeSpec)  # type: ignore[arg-type]
    run: RunSpec = Field(default_factory=RunSpec)  # type: ignore[arg-type]
    notify: NotifySpec = Field(default_factory=NotifySpec, exclude=True)  # type: ignore[arg-type]  # not hashed

    @model_validator(mode="after")
    def _cross_checks(self) -> JobSpec:
        if self.smoke.gguf not in self.export.gguf:
            raise ValueError(f"smoke.gguf '{self.smoke.gguf}' is not among export.gguf {self.export.gguf}")
        return self

    @property
    def notify_given(self) -> bool:
        """The job file has a ``[notify]`` table (else the queue's default applies)."""
        return "notify" in self.model_fields_set

    @property
    def smoke_context(self) -> int:
        """The smoke test's context in tokens: ``max_seq_length`` of prompt plus ``max_tokens`` of answer,
        at most :data:`SMOKE_MAX_CONTEXT`."""
        return min(self.model.max_seq_length + self.smoke.max_tokens, SMOKE_MAX_CONTEXT)

    @property
    def smoke_prompt_tokens(self) -> int:
        """The most tokens a smoke prompt may take: the context less the answer's ``max_tokens`` (but at
        least half the context)."""
        return self.smoke_context - min(self.smoke.max_tokens, self.smoke_context // 2)

    @property
    def artifact_name(self) -> str:
        """The stem of exported files (``export.name`` or the job name as a file stem)."""
        return self.export.name or file_stem(self.name)
