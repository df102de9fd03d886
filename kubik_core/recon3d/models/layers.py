"""Transformer pieces shared by the shape VAE and the flow model.

Pre-norm residual blocks on ``torch.nn.functional.scaled_dot_product_attention`` (flash or
memory-efficient kernels where the device has them). Blocks take an optional ``modulation``
(shift, scale, gate triples from a timestep embedding, as in DiT's adaLN-Zero) so the same code
serves the unconditional VAE and the timestep-conditioned flow transformer.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class FourierEmbedding(nn.Module):
    """xyz -> [xyz, sin(2^k pi xyz), cos(2^k pi xyz)] -> Linear(width)."""

    def __init__(self, frequencies: int, width: int, extra_channels: int = 0):
        super().__init__()
        self.register_buffer("scales", (2.0 ** torch.arange(frequencies)) * math.pi, persistent=False)
        self.proj = nn.Linear(3 + 6 * frequencies + extra_channels, width)

    def forward(self, xyz: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        angles = (xyz.unsqueeze(-1) * self.scales).flatten(-2)
        parts = [xyz, angles.sin(), angles.cos()]
        if extra is not None:
            parts.append(extra)
        return self.proj(torch.cat(parts, dim=-1))


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, context_width: int | None = None):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.to_q = nn.Linear(width, width, bias=False)
        self.to_kv = nn.Linear(context_width or width, 2 * width, bias=False)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """``bias`` [B, heads, N, T] is added to the attention logits (the VAE's distance term)."""
        context = x if context is None else context
        b, n, w = x.shape
        q = self.to_q(x).view(b, n, self.heads, -1).transpose(1, 2)
        k, v = self.to_kv(context).view(b, context.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.out(y.transpose(1, 2).reshape(b, n, w))


def _mlp(width: int, ratio: float) -> nn.Sequential:
    hidden = int(width * ratio)
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, width))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Block(nn.Module):
    """Self-attention, optional cross-attention to a context, MLP; optional adaLN modulation.

    With ``conditioned=True`` the block expects a conditioning vector [B, width] and derives
    shift/scale/gate for the self-attention and MLP branches from it (zero-initialised, so every
    block starts as the identity)."""

    def __init__(self, width: int, heads: int, *, mlp_ratio: float = 4.0, cross: bool = False,
                 context_width: int | None = None, conditioned: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=not conditioned, eps=1e-6)
        self.attn = Attention(width, heads)
        self.cross = None
        if cross:
            self.norm_cross = nn.LayerNorm(width, eps=1e-6)
            self.norm_context = nn.LayerNorm(context_width or width, eps=1e-6)
            self.cross = Attention(width, heads, context_width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=not conditioned, eps=1e-6)
        self.mlp = _mlp(width, mlp_ratio)
        self.modulation = None
        if conditioned:
            self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
            nn.init.zeros_(self.modulation[1].weight)
            nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                condition: torch.Tensor | None = None) -> torch.Tensor:
        if self.modulation is not None:
            s1, c1, g1, s2, c2, g2 = self.modulation(condition).chunk(6, dim=-1)
            x = x + g1.unsqueeze(1) * self.attn(_modulate(self.norm1(x), s1, c1))
        else:
            x = x + self.attn(self.norm1(x))
        if self.cross is not None:
            x = x + self.cross(self.norm_cross(x), self.norm_context(context))
        if self.modulation is not None:
            return x + g2.unsqueeze(1) * self.mlp(_modulate(self.norm2(x), s2, c2))
        return x + self.mlp(self.norm2(x))


class CrossAttentionBlock(nn.Module):
    """Queries attend into a context (the encoder's anchor points into all surface points), then
    an MLP."""

    def __init__(self, width: int, heads: int, context_width: int | None = None, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm_q = nn.LayerNorm(width, eps=1e-6)
        self.norm_context = nn.LayerNorm(context_width or width, eps=1e-6)
        self.attn = Attention(width, heads, context_width)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = _mlp(width, mlp_ratio)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = queries + self.attn(self.norm_q(queries), self.norm_context(context))
        return x + self.mlp(self.norm2(x))


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, *args, checkpointing: bool = False) -> torch.Tensor:
    """Apply blocks in order; with ``checkpointing`` each block's activations are recomputed in
    the backward pass (memory for compute, for large configs)."""
    for block in blocks:
        if checkpointing and torch.is_grad_enabled():
            x = checkpoint(block, x, *args, use_reentrant=False)
        else:
            x = block(x, *args)
    return x
