"""``ship/loss.png``: the training and eval loss against the step, for the model card (matplotlib, no
display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.core.atomic import replaced


def write_loss_png(train: dict[str, Any], path: Path) -> bool:
    """Plot the train stage's ``loss_curve`` and ``eval_curve`` to ``path``; ``False`` (nothing written)
    when the run kept no curve (a stage finished by an older tuneq) or has fewer than two points."""
    curve, evals = train.get("loss_curve") or [], train.get("eval_curve") or []
    if len(curve) < 2:
        return False
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.2), dpi=100)
    try:
        axes.plot([p[0] for p in curve], [p[1] for p in curve], label="train loss", linewidth=1.2)
        if evals:
            axes.plot([p[0] for p in evals], [p[1] for p in evals], "o-", label="eval loss", markersize=4)
        axes.set_xlabel("step")
        axes.set_ylabel("loss")
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        with replaced(path) as tmp:
            figure.savefig(tmp, format="png")
    finally:
        plt.close(figure)
    return True
