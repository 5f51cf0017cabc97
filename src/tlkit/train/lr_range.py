"""The learning-rate range test (Smith, "Cyclical Learning Rates", WACV 2017; fastai's
``lr_find``): a short run whose learning rate grows exponentially from ``start`` to ``end``,
one batch per rate, recording the loss; the suggested rate is read off the loss curve.

The loss is smoothed as fastai smooths it (an exponential moving average with ``beta`` 0.98,
bias-corrected), the test stops once the smoothed loss passes ``diverge`` times its minimum
(fastai's ``stop_div``), and the first tenth and last five points are left out of the rules
(fastai's ``lr_find`` does the same: the start is the average warming up, the end is the
divergence). Unlike fastai, the divergence rule and its minimum also wait for that first tenth
(at least 5 steps): where the first batches' losses are near 0 and noisy (a head fitted first),
one easy batch made the next look like a divergence (measured: a test stopped at its second
step). Three rules, all fastai's (``fastai.callback.schedule``):

* ``valley`` (fastai's default since 2.5): the longest stretch over which the loss keeps
  falling, and the point two thirds of the way down it (Z. Mueller's rule);
* ``steep``: where the smoothed loss falls fastest against log(lr);
* ``minimum``: a tenth of the rate at the lowest smoothed loss;
* ``divergence``: a tenth of the rate at which the loss blew up (the test's stop), the usual
  reading of a curve that is flat until it does.

:func:`range_test` runs on a compiled Keras model (its optimizer's ``learning_rate`` is set
before every step); :func:`suggest` is pure NumPy, for any curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

RULES = ("valley", "steep", "minimum", "divergence")
DEFAULT_RULE = "valley"


@dataclass
class RangeTest:
    """A range test's curve and what it suggests.

    Attributes:
        lrs: The rate of each step.
        losses: The smoothed (bias-corrected) training loss after each step.
        raw: The loss of each batch as the optimizer saw it.
        stopped: Why the test ended (``end`` reached, or the loss diverged at a rate).
        suggestions: Each rule's rate (None where the curve is too short for it).
        rule: The rule behind :attr:`suggested`.
    """

    lrs: list[float]
    losses: list[float]
    raw: list[float]
    stopped: str
    suggestions: dict[str, float | None] = field(default_factory=dict)
    rule: str = DEFAULT_RULE

    @property
    def suggested(self) -> float | None:
        return self.suggestions.get(self.rule)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "suggested": self.suggested}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RangeTest:
        keys = ("lrs", "losses", "raw", "stopped", "suggestions", "rule")
        return cls(**{k: data[k] for k in keys if k in data})

    def describe(self) -> str:
        """One line: the suggestion, the rule, the other rules' rates."""
        if self.suggested is None:
            return (f"no suggestion: the loss never fell over {len(self.lrs)} steps "
                    f"({self.stopped}); try a wider --start-lr/--end-lr or more --steps")
        others = ", ".join(f"{r} {v:.2g}" for r, v in self.suggestions.items()
                           if r != self.rule and v is not None)
        why = " (a tenth of where the loss blew up)" if self.rule == "divergence" else ""
        return (f"suggested learning rate {self.suggested:.2g} (rule: {self.rule}{why}"
                f"{'; ' + others if others else ''}); {self.stopped}")

    def ascii_plot(self, width: int = 60, height: int = 12) -> str:
        """The smoothed loss against log10(lr), in characters, the suggestion marked ``|``."""
        lrs, losses = np.log10(np.asarray(self.lrs, float)), np.asarray(self.losses, float)
        keep = np.isfinite(losses)
        if keep.sum() < 2:
            return "(too few finite points to plot)"
        lrs, losses = lrs[keep], losses[keep]
        # the y range of the interesting part: up to a little above the starting loss
        top = min(float(losses.max()), float(losses[: max(1, len(losses) // 10)].max()) * 1.5)
        bottom = float(losses.min())
        top = top if top > bottom else bottom + 1e-6
        x0, x1 = float(lrs.min()), float(lrs.max())
        span = x1 - x0 or 1.0
        grid = [[" "] * width for _ in range(height)]
        if self.suggested is not None:
            col = round((math.log10(self.suggested) - x0) / span * (width - 1))
            for row in grid:
                row[min(max(col, 0), width - 1)] = "|"
        for x, y in zip(lrs, losses, strict=True):
            col = round((x - x0) / span * (width - 1))
            y = min(y, top)
            row = round((top - y) / (top - bottom) * (height - 1))
            grid[row][col] = "*"
        lines = []
        for i, row in enumerate(grid):
            label = f"{top:8.3f} " if i == 0 else f"{bottom:8.3f} " if i == height - 1 else " " * 9
            lines.append(label + "".join(row))
        left, right = f"lr {10 ** x0:.0e}", f"{10 ** x1:.0e}"
        lines.append(" " * 9 + left + " " * max(1, width - len(left) - len(right)) + right)
        return "\n".join(lines)

    def plot(self, path) -> None:
        """The curve as a PNG (log-scaled rate, the suggestions marked)."""
        import matplotlib  # noqa: PLC0415 - only for the figure

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
        ax.plot(self.lrs, self.raw, color="0.8", lw=0.8, label="batch loss")
        ax.plot(self.lrs, self.losses, color="C0", lw=1.8, label="smoothed loss")
        styles = {"valley": "C3", "steep": "C2", "minimum": "C1", "divergence": "C4"}
        for rule, value in self.suggestions.items():
            if value is not None:
                mark = " (suggested)" if rule == self.rule else ""
                ax.axvline(value, color=styles.get(rule, "k"), ls="--", lw=1.2,
                           label=f"{rule}: {value:.2g}{mark}")
        finite = [v for v in self.losses if math.isfinite(v)]
        if finite:
            head = finite[: max(1, len(finite) // 10)]
            ax.set_ylim(min(finite) * 0.95, max(max(head) * 1.6, min(finite) * 1.2))
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title("learning-rate range test")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


def geometric_rates(start: float, end: float, steps: int) -> np.ndarray:
    """``steps`` rates from ``start`` to ``end``, evenly spaced in log."""
    if not (0 < start < end):
        raise ValueError(f"need 0 < start < end, got {start} and {end}")
    return np.geomspace(start, end, max(int(steps), 2))


def suggest(lrs: Iterable[float], losses: Iterable[float],
            diverged_at: float | None = None) -> dict[str, float | None]:
    """Each rule's suggested rate for a (smoothed) loss curve (see the module docstring);
    ``divergence`` needs the rate at which the test stopped on a diverging loss."""
    lrs, losses = np.asarray(list(lrs), float), np.asarray(list(losses), float)
    n = len(lrs)
    lo, hi = n // 10, n - 5
    if hi - lo < 5:  # too short to leave the ends out: use all of it
        lo, hi = 0, n
    lrs, losses = lrs[lo:hi], losses[lo:hi]
    keep = np.isfinite(losses)
    lrs, losses = lrs[keep], losses[keep]
    out: dict[str, float | None] = {rule: None for rule in RULES}
    if diverged_at is not None:
        out["divergence"] = float(diverged_at) / 10
    if len(lrs) < 3 or not np.any(np.diff(losses) < 0):
        return out
    out["valley"] = _valley(lrs, losses)
    slopes = np.gradient(losses, np.log(lrs))
    out["steep"] = float(lrs[int(np.argmin(slopes))])
    out["minimum"] = float(lrs[int(np.argmin(losses))]) / 10
    return out


def _valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """fastai's ``valley``: the longest decreasing subsequence of the loss, and the point
    (1/3 + 1/6) of the way along it."""
    n = len(losses)
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[min(idx, n - 1)])


def range_test(
    model,
    batches: Iterable,
    *,
    start: float = 1e-6,
    end: float = 1.0,
    steps: int = 60,
    beta: float = 0.98,
    diverge: float = 4.0,
    rule: str = DEFAULT_RULE,
    on_step: Callable[[int, float, float], None] | None = None,
) -> RangeTest:
    """Run the range test on ``model`` (compiled, with the optimizer and freeze state it
    trains with) over ``batches`` (an endless iterable of ``(x, y[, w])``).

    The caller keeps the weights: the test changes them (and diverges on purpose).
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; rules: {', '.join(RULES)}")
    rates = geometric_rates(start, end, steps)
    # The first points are a few batches' losses, not yet an average: a head fitted first (the
    # linear probe) starts near 0, and one easy batch would make the next look like a
    # divergence. The rule waits as long as the suggestions leave the start out.
    settle = max(5, len(rates) // 10)
    optimizer = model.optimizer
    lrs, smoothed, raw = [], [], []
    average, best, stopped = 0.0, math.inf, f"reached {end:g}"
    iterator = iter(batches)
    for i, lr in enumerate(rates):
        _set_rate(optimizer, float(lr))
        batch = next(iterator)
        logs = model.train_on_batch(*batch, return_dict=True)
        loss = float(logs["loss"])
        average = beta * average + (1 - beta) * loss
        value = average / (1 - beta ** (i + 1))
        lrs.append(float(lr))
        raw.append(loss)
        smoothed.append(value if math.isfinite(value) else float("nan"))
        if on_step is not None:
            on_step(i, float(lr), value)
        if not math.isfinite(value) or (i > settle and value > diverge * best):
            stopped = f"the loss diverged at {lr:.2g}"
            break
        if i >= settle:
            best = min(best, value)
    diverged_at = lrs[-1] if "diverged" in stopped and len(lrs) > 1 else None
    test = RangeTest(lrs, smoothed, raw, stopped, rule=rule)
    test.suggestions = suggest(lrs, smoothed, diverged_at)
    if test.suggested is None:  # the rule has nothing to read: the first rule that has
        test.rule = next((r for r in RULES if test.suggestions[r] is not None), rule)
    return test


def _set_rate(optimizer, lr: float) -> None:
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
    inner.learning_rate.assign(lr)
