"""The flow sampler: integrate a velocity network from noise (t = 0) to a shape latent (t = 1).

Kept apart from the network, as diffusers keeps its schedulers apart from its models. The
network (:class:`.models.flow.FlowTransformer`) only answers "which velocity at x and t, given
these image tokens"; this module chooses the time grid, the integrator (:data:`SAMPLERS`) and
the guidance, and takes the network as an argument: anything called as
``model(x, t, context, drop_context) -> velocity`` can be sampled. A model file's ``sampling``
section (:class:`.models.config.SamplingConfig`) holds the defaults that
:func:`.pipeline.image_to_latent` passes here.

* time grid: ``steps + 1`` evenly spaced times from 0 to 1 (:func:`time_grid`);
* ``euler``: one network evaluation per step; ``heun``: Euler's step corrected by the velocity at
  its end (second order), two evaluations per step and one on the last step (which would
  otherwise evaluate the network at t = 1, where nothing remains to integrate);
* classifier-free guidance: ``v = v_null + cfg * (v_image - v_null)``; the image and the null
  condition go through the network as one batch. ``cfg`` 1 is no guidance (one half the work).
"""
from __future__ import annotations

from typing import Callable

import torch

from .models.config import SAMPLERS

__all__ = ["SAMPLERS", "guided_velocity", "sample", "time_grid"]


def time_grid(steps: int) -> list[float]:
    """The times the sampler visits: 0 (noise), ..., 1 (data), ``steps`` intervals."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return torch.linspace(0.0, 1.0, steps + 1).tolist()


def guided_velocity(model, x: torch.Tensor, t: float, context: torch.Tensor, cfg: float) -> torch.Tensor:
    """The velocity (float32) at latents ``x`` and time ``t`` with guidance scale ``cfg``."""
    b, device, dtype = x.shape[0], context.device, context.dtype
    times = torch.full((b,), t, device=device, dtype=dtype)
    if cfg == 1.0:
        return model(x, times, context).float()
    drop = torch.cat([torch.zeros(b, dtype=torch.bool, device=device), torch.ones(b, dtype=torch.bool, device=device)])
    both = model(torch.cat([x, x]), torch.cat([times, times]), torch.cat([context, context]), drop).float()
    with_image, null = both[:b], both[b:]
    return null + cfg * (with_image - null)


@torch.no_grad()
def sample(model, context: torch.Tensor, shape: tuple[int, int, int], *,
           steps: int = 24, cfg: float = 3.0, sampler: str = "euler",
           generator: torch.Generator | None = None,
           progress: Callable[[int, int], None] | None = None,
           should_stop: Callable[[], None] | None = None) -> torch.Tensor:
    """Latents of ``shape`` [B, tokens, channels] for image tokens ``context`` [B, L, D]: noise drawn
    from ``generator``, integrated from t = 0 to t = 1 (float32 state; the network runs in the
    context's dtype). ``progress(done, steps)`` after each step; ``should_stop()`` before each
    step may raise to interrupt."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    times = time_grid(steps)
    device, dtype = context.device, context.dtype
    x = torch.randn(shape, generator=generator, device=device, dtype=torch.float32).to(dtype).float()
    for i in range(steps):
        if should_stop is not None:
            should_stop()
        t0, t1 = times[i], times[i + 1]
        v0 = guided_velocity(model, x.to(dtype), t0, context, cfg)
        if sampler == "heun" and i < steps - 1:
            v1 = guided_velocity(model, (x + (t1 - t0) * v0).to(dtype), t1, context, cfg)
            x = x + (t1 - t0) * 0.5 * (v0 + v1)
        else:
            x = x + (t1 - t0) * v0
        if progress is not None:
            progress(i + 1, steps)
    return x
