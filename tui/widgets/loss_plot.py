"""Train and eval loss against the step (textual-plotext)."""

from __future__ import annotations

from typing import Any

from textual_plotext import PlotextPlot

from tui.feed import Series


class LossPlot(PlotextPlot):
    """Redrawn only when a series changes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shown: tuple[Series, Series] | None = None

    @property
    def plotted(self) -> tuple[Series, Series] | None:
        """The train and eval series on the plot now (``None`` before the first)."""
        return self._shown

    def show(self, train: Series, evals: Series) -> None:
        """Plot the (thinned) series."""
        if (train, evals) == self._shown:
            return
        self._shown = (train, evals)
        plt = self.plt
        plt.clear_data()
        plt.title("loss")
        plt.xlabel("step")
        if train[0]:
            plt.plot(list(train[0]), list(train[1]), label="train", marker="braille")
        if evals[0]:
            plt.plot(list(evals[0]), list(evals[1]), label="eval", marker="braille")
        self.refresh()
