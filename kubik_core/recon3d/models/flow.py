"""Rectified-flow transformer over the VAE's latent tokens, conditioned on image tokens.

Conventions (used by training and sampling alike):

* time t in [0, 1]: ``x_t = (1 - t) * noise + t * data``; t = 0 is pure noise, t = 1 the shape;
* the network predicts the velocity ``v = data - noise`` (constant along each straight path);
* training times are logit-normal (``t = sigmoid(n), n ~ N(0, 1)``), which spends the steps in the
  middle of the path where the velocity is hardest to predict;
* classifier-free guidance: in training the image tokens are replaced by a learned null token with
  probability ``condition_dropout``; in sampling ``v = v_null + cfg * (v_image - v_null)``.

Latent tokens arrive in the canonical order of :func:`.vae.canonical_token_order` (token k near
the same place for every shape), so each position has a learned embedding.

Each block: adaLN-modulated self-attention over the latent tokens (timestep via shift/scale/gate,
zero-initialised), cross-attention from the latent tokens into the image tokens, MLP.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .layers import Block, run_blocks


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000, the usual diffusion range)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


class FlowTransformer(nn.Module):
    def __init__(self, config: dict, latent_channels: int, context_width: int, tokens: int):
        super().__init__()
        self.config = dict(config)
        width, heads = config["width"], config["heads"]
        self.checkpointing = False
        self.x_in = nn.Linear(latent_channels, width)
        self.token_embed = nn.Parameter(torch.randn(1, tokens, width) * 0.02)  # tokens come in canonical order
        self.time_mlp = nn.Sequential(nn.Linear(256, width), nn.SiLU(), nn.Linear(width, width))
        self.context_in = nn.Linear(context_width, width)
        self.null_context = nn.Parameter(torch.zeros(1, 1, width))
        self.blocks = nn.ModuleList(
            Block(width, heads, mlp_ratio=config["mlp_ratio"], cross=True, conditioned=True)
            for _ in range(config["depth"]))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, latent_channels)
        for layer in (self.final_modulation[1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                drop_context: torch.Tensor | None = None) -> torch.Tensor:
        """Noisy latents [B, T, C], times [B], image tokens [B, L, D] -> velocity [B, T, C].
        ``drop_context`` [B] bool swaps a sample's image tokens for the null token."""
        context = self.context_in(context)
        if drop_context is not None:
            null = self.null_context.expand_as(context).to(context.dtype)
            context = torch.where(drop_context[:, None, None], null, context)
        condition = self.time_mlp(timestep_embedding(t, 256).to(x.dtype))
        h = self.x_in(x) + self.token_embed.to(x.dtype)
        h = run_blocks(self.blocks, h, context, condition, checkpointing=self.checkpointing)
        shift, scale = self.final_modulation(condition).chunk(2, dim=-1)
        h = self.final_norm(h) * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)
        return self.out(h)


def logit_normal_times(batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    return torch.sigmoid(torch.randn(batch, generator=generator, device=device))


def flow_matching_loss(model: FlowTransformer, data: torch.Tensor, context: torch.Tensor,
                       condition_dropout: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Velocity-prediction MSE at logit-normal times, with condition dropout for CFG."""
    b = data.shape[0]
    noise = torch.randn(data.shape, generator=generator, device=data.device, dtype=data.dtype)
    t = logit_normal_times(b, generator, data.device).to(data.dtype)
    x_t = (1 - t)[:, None, None] * noise + t[:, None, None] * data
    drop = torch.rand(b, generator=generator, device=data.device) < condition_dropout
    velocity = model(x_t, t, context, drop)
    return (velocity.float() - (data - noise).float()).square().mean()


SAMPLERS = ("euler", "heun")


@torch.no_grad()
def sample(model: FlowTransformer, context: torch.Tensor, shape: tuple[int, int, int], *,
           steps: int = 24, cfg: float = 3.0, sampler: str = "euler",
           generator: torch.Generator | None = None,
           progress: Callable[[int, int], None] | None = None,
           should_stop: Callable[[], None] | None = None) -> torch.Tensor:
    """Integrate the flow from noise (t=0) to data (t=1). ``cfg`` 1 = no guidance.
    Heun costs two network evaluations per step (one on the last step)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    device, dtype = context.device, context.dtype
    x = torch.randn(shape, generator=generator, device=device, dtype=torch.float32).to(dtype)
    b = shape[0]
    guided = cfg != 1.0

    def velocity(x_now: torch.Tensor, t_now: float) -> torch.Tensor:
        t = torch.full((b,), t_now, device=device, dtype=dtype)
        if not guided:
            return model(x_now, t, context).float()
        both = model(torch.cat([x_now, x_now]), torch.cat([t, t]), torch.cat([context, context]),
                     torch.cat([torch.zeros(b, dtype=torch.bool, device=device),
                                torch.ones(b, dtype=torch.bool, device=device)])).float()
        with_image, null = both[:b], both[b:]
        return null + cfg * (with_image - null)

    times = torch.linspace(0.0, 1.0, steps + 1).tolist()
    x = x.float()
    for i in range(steps):
        if should_stop is not None:
            should_stop()
        t0, t1 = times[i], times[i + 1]
        v0 = velocity(x.to(dtype), t0)
        if sampler == "heun" and i < steps - 1:
            x_pred = x + (t1 - t0) * v0
            v1 = velocity(x_pred.to(dtype), t1)
            x = x + (t1 - t0) * 0.5 * (v0 + v1)
        else:
            x = x + (t1 - t0) * v0
        if progress is not None:
            progress(i + 1, steps)
    return x
