"""The demo's margin: how many of 96 prompts its tested file answers in the trained format, per run.

    .venv/bin/python bench/demo_margin.py [--seeds 11 22 33] [--threads 1 2] [--variant NAME:key=value,...]
                                          [--parallel N] [--out FILE]

One smoke prompt passing says little: a 2-layer model's greedy answer can flip on another CPU. This runs
``jobs/demo-tiny.toml`` once per (variant, seed, thread count), each in a fresh run directory, then asks the
run's Q4_K_M and f16 files all 48 training questions and 48 new ones (the same cases, another age and sex)
and counts the answers that close the reasoning with ``</think>``, then start the trained answer
(``The most likely diagnosis is``), and stop before 160 tokens. A variant overrides keys of the job file,
e.g. ``lr6:train.learning_rate=6e-3``; ``ATEN_CPU_CAPABILITY=avx2`` in the environment forces torch's AVX2
kernels (the CPU the demo once failed on).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import runner.pipeline  # noqa: F401  (one libstdc++ for the process before llama.cpp loads)

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "jobs" / "demo-tiny.toml"
DATA = ROOT / "jobs" / "data" / "medical-cot-tiny.jsonl"
FORMAT = re.compile(r"</think>\s*The most likely diagnosis is")


def job_text(overrides: dict[str, str], seed: int) -> str:
    """The demo job with ``section.key=value`` overrides and ``[train] seed``; data by absolute path."""
    text = DEMO.read_text().replace('"data/medical-cot-tiny.jsonl"', json.dumps(str(DATA)))
    for dotted, value in {**overrides, "train.seed": str(seed)}.items():
        section, key = dotted.split(".", 1)
        line = re.compile(rf"^{re.escape(key)} = .*$", re.M)
        start = text.index(f"[{section}]\n") + len(section) + 3
        end = text.find("\n[", start)
        end = len(text) if end < 0 else end
        body = text[start:end]
        body = line.sub(f"{key} = {value}", body) if line.search(body) else f"{key} = {value}\n{body}"
        text = text[:start] + body + text[end:]
    return text


def prompts() -> dict[str, list[str]]:
    """The 48 training questions, and 48 new ones: the same cases for a patient of another age and sex."""
    rng = random.Random(0)
    questions = [json.loads(line)["Question"] for line in DATA.read_text().splitlines()]
    new = []
    for question in questions:
        age, sex, rest = re.match(r"A (\d+)-year-old (man|woman) (.*)", question).groups()  # type: ignore[union-attr]
        other = "woman" if sex == "man" else "man"
        new.append(f"A {int(age) + rng.choice([-13, -7, 5, 11])}-year-old {other} {rest}")
    return {"training": questions, "new": new}


def score(gguf: Path) -> dict[str, dict[str, int]]:
    """Counts of answers that close the reasoning, have the trained format and stop, per prompt set."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=512, n_threads=2, seed=0, verbose=False)
    out: dict[str, dict[str, int]] = {}
    for name, questions in prompts().items():
        counts = {"think": 0, "format": 0, "stop": 0, "of": len(questions)}
        for question in questions:
            reply = llm.create_chat_completion(
                messages=[{"role": "user", "content": question}], temperature=0.0, max_tokens=160
            )
            answer = reply["choices"][0]["message"]["content"] or ""
            counts["think"] += "</think>" in answer
            counts["format"] += FORMAT.search(answer) is not None
            counts["stop"] += reply["choices"][0]["finish_reason"] == "stop"
        out[name] = counts
    return out


def one_run(work: Path, variant: str, overrides: dict[str, str], seed: int, threads: int) -> dict[str, Any]:
    name = f"{variant}-seed{seed}-t{threads}"
    job = work / f"{name}.toml"
    job.write_text(job_text(overrides, seed))
    run_dir = work / name
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TUNEQ_HOME": str(work / "home")}
    result = subprocess.run(
        [sys.executable, "-m", "runner", "run", str(job), "--run-dir", str(run_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    row: dict[str, Any] = {"variant": variant, "seed": seed, "threads": threads, "ok": result.returncode == 0}
    report = run_dir / "report.json"
    if report.exists():
        data = json.loads(report.read_text())
        row["train"] = {k: data.get("train", {}).get(k) for k in ("first_loss", "final_loss")}
        row["seconds"] = {k: v["seconds"] for k, v in data.get("stages", {}).items()}
    for quant in ("Q4_K_M", "f16"):
        gguf = run_dir / "gguf" / f"demo-tiny-{quant}.gguf"
        if gguf.exists():
            row[quant] = score(gguf)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 22, 33])
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--variant", action="append", default=[], help="NAME:section.key=value,...")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    variants = {"demo": {}}
    for spec in args.variant:
        name, _, pairs = spec.partition(":")
        variants[name] = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
    with tempfile.TemporaryDirectory(prefix="tuneq-margin-") as tmp:
        cases = list(itertools.product(variants.items(), args.seeds, args.threads))
        with ThreadPoolExecutor(args.parallel) as pool:
            rows = list(
                pool.map(lambda c: one_run(Path(tmp), c[0][0], c[0][1], c[1], c[2]), cases)  # type: ignore[misc]
            )
    for row in rows:
        q4 = row.get("Q4_K_M", {})
        cells = " ".join(
            f"{k}: think {v['think']} format {v['format']} stop {v['stop']} /{v['of']}" for k, v in q4.items()
        )
        print(
            f"{row['variant']:<10} seed {row['seed']:<3} t{row['threads']}  ok {row['ok']!s:<5} Q4_K_M {cells}"
        )
    if args.out:
        args.out.write_text(json.dumps({"variants": variants, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
