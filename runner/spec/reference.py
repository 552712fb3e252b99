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
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
