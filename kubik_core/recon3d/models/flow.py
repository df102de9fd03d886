"""Rectified-flow transformer over the VAE's latent tokens, conditioned on image tokens.

What the network means (the conventions its sampler and its training loss both follow):

* time t in [0, 1]: ``x_t = (1 - t) * noise + t * data``; t = 0 is pure noise, t = 1 the shape;
* the network predicts the velocity ``v = data - noise`` (constant along each straight path);
* ``drop_context`` swaps a sample's image tokens for a learned null token: the unconditional
  velocity that classifier-free guidance compares the image's velocity with.

The network is only the velocity field. How it is integrated (steps, Euler or Heun, guidance
scale) is :mod:`kubik_core.recon3d.sampler`; how it is taught (logit-normal times, condition
dropout, the velocity loss) is :mod:`kubik_core.recon3d.train.flow`.

Latent tokens arrive in the canonical order of :func:`.vae.canonical_token_order` (token k near
the same place for every shape), so each position has a learned embedding.

Each block: adaLN-modulated self-attention over the latent tokens (timestep via shift/scale/gate,
zero-initialised), cross-attention from the latent tokens into the image tokens, MLP.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import FlowConfig
from .layers import Block, run_blocks


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000, the usual diffusion range)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


class FlowTransformer(nn.Module):
    def __init__(self, config: FlowConfig, latent_channels: int, context_width: int, tokens: int):
        super().__init__()
        self.config = config
        width, heads = config.width, config.heads
        self.checkpointing = False
        self.x_in = nn.Linear(latent_channels, width)
        self.token_embed = nn.Parameter(torch.randn(1, tokens, width) * 0.02)  # tokens come in canonical order
        self.time_mlp = nn.Sequential(nn.Linear(256, width), nn.SiLU(), nn.Linear(width, width))
        self.context_in = nn.Linear(context_width, width)
        self.null_context = nn.Parameter(torch.zeros(1, 1, width))
        self.blocks = nn.ModuleList(
            Block(width, heads, mlp_ratio=config.mlp_ratio, cross=True, conditioned=True)
            for _ in range(config.depth))
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
