"""What a failure's text means: the causes and hints of well-known failures, in one place for the pipeline's
``error`` event (:mod:`runner.pipeline.run`) and a container's end (:mod:`runner.backends.container`)."""

from __future__ import annotations

import errno

DISK_FULL = "the disk is full (no space left on device)"
DISK_HINT = "free space on that disk, or move TUNEQ_HOME (or the run directory) to a bigger disk"
_SMALLER = "lower per_device_train_batch_size or max_seq_length"
CUDA_OOM = f"CUDA out of memory: {_SMALLER}, or set load_in_4bit = true"
HOST_OOM = f"host out of memory (container OOMKilled): {_SMALLER}"
_OOM_MARKERS = ("out of memory", "outofmemoryerror")  # torch's words, lower-cased


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a full disk (or an exhausted quota), also as a native writer words it."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "no space left on device" in str(exc).lower()  # safetensors' and others' OS error, as text


def is_out_of_memory(text: str) -> bool:
    """Whether a message or log line tells of GPU memory running out (``torch.OutOfMemoryError: CUDA out of
    memory``, ``CUDA error: out of memory``)."""
    lowered = text.lower()
    return any(marker in lowered for marker in _OOM_MARKERS)


def hint(text: str) -> str:
    """The fix for a failure whose exception text is ``text`` (the log's traceback where none is known)."""
    lowered = text.lower()
    if is_out_of_memory(text):
        return CUDA_OOM
    if "no space left" in lowered:
        return DISK_HINT
    if "401" in lowered or "gated" in lowered:
        return "the hub refused access: export HF_TOKEN with a token that can read this model"
    if "offline" in lowered or "couldn't connect" in lowered or "connection" in lowered:
        return "the hub is unreachable: use a local model path, or cache the model while online"
    return "see log.txt for the traceback"
