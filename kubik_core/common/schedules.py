"""Learning-rate schedules shared by the training loops (classifiers, the 3D VAE and flow).

A schedule here is a factor per optimizer step for ``torch.optim.lr_scheduler.LambdaLR``: the
optimizer's learning rate is multiplied by ``factor(step)``. It is a plain function, not a
callable object, so that LambdaLR leaves it out of its state dict: a resumed run rebuilds it from
its own settings and the checkpoint stays tensors and numbers only.
"""
from __future__ import annotations

import math
from typing import Callable


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_steps`` steps (1/warmup_steps, 2/warmup_steps ... 1.0 at the
    warm-up's last step), then half a cosine from 1.0 down to ``min_ratio`` at ``total_steps``,
    which it keeps after that (a run resumed past its planned end does not restart the decay)."""
    if not 0.0 <= min_ratio <= 1.0:
        raise ValueError(f"the schedule's floor min_ratio must be from 0 to 1, got {min_ratio}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def warmup_constant(warmup_steps: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_steps`` steps, then the full learning rate for good."""

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0

    return factor
