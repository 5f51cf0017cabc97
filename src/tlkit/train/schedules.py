"""Learning-rate schedules, computed from the global step so a resumed run picks up exactly.

``plateau`` (the papers: divide by 10 when validation accuracy stops improving) is stateful and
handled by :class:`PlateauState`; the others are pure functions of the step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


def learning_rate_at(cfg, base_lr: float, step: int, steps_per_epoch: int, epochs: int) -> float:
    """Learning rate at global ``step`` for schedule config ``cfg`` (a ``ScheduleConfig``).

    Args:
        cfg: Schedule settings (name, factor, step_epochs, warmup_epochs, min_lr).
        base_lr: The optimizer's learning rate.
        step: Global step (0-based) within the schedule.
        steps_per_epoch: Steps in one epoch.
        epochs: Epochs the schedule spans.
    """
    total = max(1, steps_per_epoch * epochs)
    epoch = step / max(1, steps_per_epoch)
    warmup = cfg.warmup_epochs * steps_per_epoch
    if cfg.name in ("constant", "plateau"):
        return base_lr
    if cfg.name == "step":
        return base_lr * cfg.factor ** math.floor(epoch / cfg.step_epochs)
    if cfg.name == "cosine":
        if step < warmup:
            return base_lr * (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return cfg.min_lr + 0.5 * (base_lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))
    if cfg.name == "onecycle":
        # Smith's one-cycle: linear up from base/25 to base over the warmup (default 30%), then
        # cosine down to base/1e4.
        up = warmup if warmup > 0 else 0.3 * total
        start, end = base_lr / 25.0, base_lr / 1e4
        if step < up:
            return start + (base_lr - start) * step / up
        progress = min(1.0, (step - up) / max(1, total - up))
        return end + 0.5 * (base_lr - end) * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {cfg.name!r}")


@dataclass
class PlateauState:
    """Divide the learning rate by ``1/factor`` after ``patience`` epochs without improvement."""

    best: float | None = None
    wait: int = 0
    scale: float = 1.0

    def update(
        self, value: float, *, mode: str, factor: float, patience: int, min_scale: float = 0.0
    ) -> bool:
        """Record an epoch's monitored value; return True when the rate was just reduced."""
        improved = self.best is None or (value > self.best if mode == "max" else value < self.best)
        if improved:
            self.best, self.wait = value, 0
            return False
        self.wait += 1
        if self.wait >= patience:
            self.scale = max(self.scale * factor, min_scale)
            self.wait = 0
            return True
        return False

    def as_dict(self) -> dict:
        return asdict(self)
