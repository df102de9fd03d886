"""The flow sampler (kubik_core.recon3d.sampler), apart from the network: it integrates any velocity
field from noise at t = 0 to data at t = 1, with the guidance and step counts it promises."""
from __future__ import annotations

import pytest
import torch

from kubik_core.recon3d import sampler as sampler_module
from kubik_core.recon3d.models.config import SCHEMA


class _ExactVelocity(torch.nn.Module):
    """The true rectified-flow velocity towards one data point: v = (x* - x) / (1 - t)."""

    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.target, self.calls, self.batches = target, 0, []

    def forward(self, x, t, context, drop_context=None):
        self.calls += 1
        self.batches.append(x.shape[0])
        target = self.target.repeat(x.shape[0] // self.target.shape[0], 1, 1)
        return (target - x) / (1 - t).clamp(min=1e-3)[:, None, None]


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_sampler_integrates_from_noise_at_t0_to_data_at_t1(sampler):
    target = torch.randn(1, 16, 4)
    model = _ExactVelocity(target)
    out = sampler_module.sample(model, torch.zeros(1, 5, 8), (1, 16, 4), steps=6, cfg=1.0, sampler=sampler,
                                generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, target, atol=1e-4)
    assert model.calls == (6 if sampler == "euler" else 11)  # Heun: 2 per step, 1 on the last
    assert set(model.batches) == {1}


def test_guidance_evaluates_image_and_null_condition_together():
    target = torch.randn(2, 16, 4)
    model = _ExactVelocity(target)
    out = sampler_module.sample(model, torch.zeros(2, 5, 8), (2, 16, 4), steps=3, cfg=3.0)
    assert model.batches == [4, 4, 4]
    assert torch.allclose(out, target, atol=1e-4)  # image and null velocities agree here: cfg changes nothing
    with pytest.raises(ValueError, match="unknown sampler 'ddim'"):
        sampler_module.sample(model, torch.zeros(1, 5, 8), (1, 16, 4), sampler="ddim")


def test_guidance_extrapolates_from_the_null_velocity_towards_the_image_one():
    """v = v_null + cfg * (v_image - v_null): with the image velocity 1 and the null one 0, one Euler
    step from t = 0 to 1 moves every value by exactly cfg."""

    class ImageOrNull(torch.nn.Module):
        def forward(self, x, t, context, drop_context=None):
            dropped = torch.zeros(x.shape[0], dtype=torch.bool) if drop_context is None else drop_context
            return (~dropped).float()[:, None, None].expand_as(x)

    noise = torch.randn((1, 4, 2), generator=torch.Generator().manual_seed(7))
    for cfg in (1.0, 2.5):
        out = sampler_module.sample(ImageOrNull(), torch.zeros(1, 3, 8), (1, 4, 2), steps=1, cfg=cfg,
                                    generator=torch.Generator().manual_seed(7))
        assert torch.allclose(out - noise, torch.full_like(noise, cfg))


def test_time_grid_runs_from_noise_to_data_and_refuses_no_steps():
    assert sampler_module.time_grid(4) == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        sampler_module.sample(_ExactVelocity(torch.zeros(1, 2, 2)), torch.zeros(1, 1, 2), (1, 2, 2), steps=0)


def test_the_config_schema_and_the_3d_node_offer_the_samplers_this_module_has(node_classes):
    offered = node_classes["KubikImageToShape"].INPUT_TYPES()["required"]["sampler"][0]
    assert SCHEMA["sampling"]["sampler"].choices == sampler_module.SAMPLERS == tuple(offered)


def test_progress_is_reported_after_each_step_and_should_stop_can_interrupt():
    done = []
    sampler_module.sample(_ExactVelocity(torch.zeros(1, 2, 2)), torch.zeros(1, 1, 2), (1, 2, 2), steps=3,
                          cfg=1.0, progress=lambda i, n: done.append((i, n)))
    assert done == [(1, 3), (2, 3), (3, 3)]

    class Interrupted(Exception):
        pass

    calls = []

    def should_stop():
        calls.append(1)
        if len(calls) == 2:
            raise Interrupted

    model = _ExactVelocity(torch.zeros(1, 2, 2))
    with pytest.raises(Interrupted):
        sampler_module.sample(model, torch.zeros(1, 1, 2), (1, 2, 2), steps=5, cfg=1.0, should_stop=should_stop)
    assert model.calls == 1   # stopped before the second step's network call
