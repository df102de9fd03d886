"""kubik_core.common.schedules: the warm-up + cosine schedule every training loop uses."""
from __future__ import annotations

import io
import math

import pytest
import torch

from kubik_core.common.schedules import warmup_cosine


def test_warm_up_climbs_to_the_full_rate_then_the_cosine_ends_at_the_floor():
    factor = warmup_cosine(total_steps=100, warmup_steps=10, min_ratio=0.01)
    assert [factor(step) for step in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])   # warm-up end: 1.0
    assert factor(10) == pytest.approx(1.0)                                          # decay starts
    assert factor(55) == pytest.approx(0.01 + 0.99 * 0.5)                            # half way
    assert factor(100) == pytest.approx(0.01)                                        # the last step
    assert factor(250) == pytest.approx(0.01)                                        # and after it
    decay = [factor(step) for step in range(10, 101)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_the_3d_trainers_floor_of_ten_percent_and_no_warm_up():
    factor = warmup_cosine(total_steps=40, warmup_steps=0, min_ratio=0.1)
    assert factor(0) == 1.0
    assert factor(20) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert factor(40) == pytest.approx(0.1)


def test_a_floor_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="min_ratio must be from 0 to 1, got 1.5"):
        warmup_cosine(10, 2, 1.5)


def test_with_a_real_optimizer_and_a_weights_only_checkpoint():
    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([weight], lr=0.2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(20, 4, 0.05))
    seen = []
    for _ in range(20):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[3] == pytest.approx(0.2)                               # warm-up end: the full rate
    assert seen[0] == pytest.approx(0.05) and seen[-1] > 0.2 * 0.05    # the last step still decays
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2 * 0.05)  # after it: the floor
    # The schedule is rebuilt from settings on resume: the state holds numbers only.
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD([weight], lr=0.2), warmup_cosine(20, 4, 0.05))
    resumed.load_state_dict(state)
    assert resumed.last_epoch == 20 and resumed.get_last_lr() == pytest.approx([0.2 * 0.05])


def test_warmup_constant_ramps_linearly_then_holds():
    from kubik_core.common.schedules import warmup_constant

    factor = warmup_constant(4)
    assert [factor(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [warmup_constant(0)(s) for s in range(3)] == [1.0, 1.0, 1.0]
