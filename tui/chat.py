"""A conversation with a tested GGUF in a child process (``python -m runner.pipeline.chat``), so the TUI
never loads llama.cpp. Plain Python with blocking calls: use it from a worker thread."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any


class ChatSession:
    """The chat child for one GGUF: started at the first question, stopped by :meth:`close`."""

    def __init__(self, gguf: Path, n_ctx: int, max_tokens: int) -> None:
        self.gguf, self.n_ctx, self.max_tokens = gguf, n_ctx, max_tokens
        self._child: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The model's process, once the first question started it (``None`` before and after)."""
        return self._child.pid if self._child is not None else None

    def ask(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """The model's reply to the conversation so far (``{"error": ...}`` when there is none)."""
        with self._lock:
            if self._child is None:
                self._child = self._start()
                ready = self._read()
                if "error" in ready:
                    return ready
            assert self._child.stdin is not None
            try:
                self._child.stdin.write(json.dumps({"messages": messages}) + "\n")
                self._child.stdin.flush()
            except OSError:
                return {"error": "the model's process has ended"}
            return self._read()

    def close(self) -> None:
        """Stop the child."""
        child, self._child = self._child, None
        if child is not None:
            child.kill()
            child.wait()

    def _start(self) -> subprocess.Popen[str]:
        limits = ["--n-ctx", str(self.n_ctx), "--max-tokens", str(self.max_tokens)]
        return subprocess.Popen(
            [sys.executable, "-m", "runner.pipeline.chat", str(self.gguf), *limits],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # the terminal's ^C is the TUI's, not the model's
        )

    def _read(self) -> dict[str, Any]:
        assert self._child is not None and self._child.stdout is not None
        line = self._child.stdout.readline()
        if not line:
            return {"error": "the model's process ended before it answered"}
        reply: dict[str, Any] = json.loads(line)
        return reply
