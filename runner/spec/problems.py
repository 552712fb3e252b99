"""A problem found in a job file, and the error that carries all of them at once."""

from __future__ import annotations

from dataclasses import dataclass

from runner.core.secrets import redact


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a job file: where it is, what is wrong, how to fix it (secrets redacted)."""

    file: str
    line: int | None
    key: str | None
    message: str
    hint: str | None = None

    def __post_init__(self) -> None:
        for name in ("file", "key", "message", "hint"):
            if (value := getattr(self, name)) is not None:
                object.__setattr__(self, name, redact(value))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        what = f"{self.key}: {self.message}" if self.key else self.message
        return f"{where}: {what}" + (f"\n    hint: {self.hint}" if self.hint else "")


class SpecError(Exception):
    """Every problem found in one job file (validation reports them all, not just the first)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))
