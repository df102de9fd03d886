"""The flow's training loss (kubik_core.recon3d.train.flow): what the velocity network is taught."""
from __future__ import annotations

import torch

from kubik_core.recon3d.train.flow import flow_matching_loss, logit_normal_times


def test_training_loss_targets_the_velocity_from_noise_to_data():
    """With an exact velocity oracle for x_t, the loss is 0; with zero output it is E|data - noise|^2."""
    data = torch.randn(64, 16, 4)

    class Zero(torch.nn.Module):
        def forward(self, x, t, context, drop_context=None):
            return torch.zeros_like(x)

    loss = flow_matching_loss(Zero(), data, torch.zeros(64, 5, 8), 0.1, torch.Generator().manual_seed(0))
    expected = (data.square().mean() + 1.0).item()  # E|data - noise|^2 = E data^2 + E noise^2
    assert abs(loss.item() - expected) / expected < 0.1


def test_a_network_that_knows_the_noise_has_zero_loss_and_dropout_follows_its_rate():
    """The target is data - noise at x_t = (1 - t) noise + t data: a network told the data recovers
    it exactly. The condition is dropped for about condition_dropout of the samples."""
    data = torch.randn(4000, 2, 3)
    dropped = []

    class Oracle(torch.nn.Module):
        def forward(self, x, t, context, drop_context=None):
            dropped.append(drop_context.float().mean().item())
            noise = (x - t[:, None, None] * data) / (1 - t)[:, None, None]
            return data - noise

    loss = flow_matching_loss(Oracle(), data, torch.zeros(4000, 1, 8), 0.25, torch.Generator().manual_seed(1))
    assert loss.item() < 1e-6
    assert abs(dropped[0] - 0.25) < 0.03
    times = logit_normal_times(4000, torch.Generator().manual_seed(2))
    assert 0 < times.min() and times.max() < 1 and abs(times.median().item() - 0.5) < 0.03
