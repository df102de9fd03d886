"""The shape VAE: a set of surface points -> a small set of latent tokens -> a signed-distance field.

Vector-set design (as in 3DShape2VecSet, Hunyuan3D-2's ShapeVAE, TripoSG):

* encoder: surface points with normals are Fourier-embedded; ``latent_tokens`` learned queries
  cross-attend into them (Perceiver style, so token i has a stable role, which the flow model's
  positional embedding relies on), a few self-attention blocks follow, and a linear layer gives
  the mean and log-variance of a KL-regularised latent set [B, tokens, channels];
* decoder: the latent set is lifted back to the model width and mixed by self-attention; any
  query point, Fourier-embedded, cross-attends into those tokens and a linear head gives its
  signed distance (negative inside, clipped to ``sdf_clip`` in training). That per-point path is
  one cross-attention and a linear head (an MLP there only with ``query_mlp_ratio`` > 0): it runs
  for every training query and every grid point at decode time, so it is kept light.

``decode`` runs once per shape; ``query`` is then cheap per point, which is what hierarchical
mesh extraction exploits.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import Block, CrossAttentionBlock, FourierEmbedding, run_blocks


class ShapeVAE(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        width, heads = config["width"], config["heads"]
        frequencies = config["fourier_frequencies"]
        self.latent_tokens = config["latent_tokens"]
        self.latent_channels = config["latent_channels"]
        self.checkpointing = False

        self.point_embed = FourierEmbedding(frequencies, width, extra_channels=3)
        self.queries = nn.Parameter(torch.randn(self.latent_tokens, width) * 0.02)
        self.encoder_cross = CrossAttentionBlock(width, heads)
        self.encoder_blocks = nn.ModuleList(Block(width, heads) for _ in range(config["encoder_layers"]))
        self.to_moments = nn.Linear(width, 2 * self.latent_channels)

        self.from_latent = nn.Linear(self.latent_channels, width)
        self.decoder_blocks = nn.ModuleList(Block(width, heads) for _ in range(config["decoder_layers"]))
        self.query_embed = FourierEmbedding(frequencies, width)
        self.query_cross = CrossAttentionBlock(width, heads, mlp_ratio=config.get("query_mlp_ratio", 0.0))
        self.to_sdf = nn.Sequential(nn.LayerNorm(width, eps=1e-6), nn.Linear(width, 1))

    def encode(self, points: torch.Tensor, normals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Surface points and unit normals [B, N, 3] -> (mean, logvar) [B, tokens, channels]."""
        features = self.point_embed(points, normals)
        queries = self.queries.unsqueeze(0).expand(points.shape[0], -1, -1)
        x = self.encoder_cross(queries, features)
        x = run_blocks(self.encoder_blocks, x, checkpointing=self.checkpointing)
        mean, logvar = self.to_moments(x).chunk(2, dim=-1)
        return mean, logvar.clamp(-30.0, 20.0)

    @staticmethod
    def sample(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + (0.5 * logvar).exp() * noise

    @staticmethod
    def kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(q || N(0, I)) per latent element, averaged."""
        return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latent set [B, tokens, channels] -> decoder tokens [B, tokens, width]."""
        x = self.from_latent(latents)
        return run_blocks(self.decoder_blocks, x, checkpointing=self.checkpointing)

    def query(self, tokens: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Decoder tokens [B, tokens, width] and points [B, N, 3] -> signed distance [B, N]."""
        x = self.query_cross(self.query_embed(points), tokens)
        return self.to_sdf(x).squeeze(-1)
