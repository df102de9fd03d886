"""The shape VAE: a set of surface points -> a small set of latent tokens -> a signed-distance field.

Vector-set design (as in 3DShape2VecSet, Hunyuan3D-2's ShapeVAE, TripoSG):

* encoder: surface points are Fourier-embedded (plus a projection of their normals); the
  embeddings of ``latent_tokens`` farthest-point-sampled surface points are the queries that
  cross-attend into all of them, so each latent token starts anchored at a place on the surface
  (measured: with learned queries instead, every token saw the same average and the decoder
  learned one blob for all shapes); a few self-attention blocks follow, and a linear layer gives
  the mean and log-variance of a KL-regularised latent set [B, tokens, channels], an unordered set;
* decoder: the latent set is lifted back to the model width and mixed by self-attention; any
  query point is Fourier-embedded (the same embedding as the encoder's points) and passed through a small residual MLP (``query_field_layers``),
  attends into those tokens, and a two-layer head reads the attention output plus the query
  (``query_residual``) to give its signed distance (negative inside, clipped to ``sdf_clip`` in
  training). Measured on the CPU: with only a linear embedding and a linear head (3DShape2VecSet's
  decoder) a tiny model could not fit even one shape's near-surface signs in 400 steps (60 %
  right), while a plain MLP field reached 80 % in 250, hence the MLP layers; without the residual
  the output stayed constant for the first few hundred steps.

``decode`` runs once per shape; ``query`` is then cheap per point, which is what hierarchical
mesh extraction exploits.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import Attention, Block, CrossAttentionBlock, FourierEmbedding, run_blocks


class ShapeVAE(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        width, heads = config["width"], config["heads"]
        frequencies = config["fourier_frequencies"]
        self.latent_tokens = config["latent_tokens"]
        self.latent_channels = config["latent_channels"]
        self.checkpointing = False

        self.point_embed = FourierEmbedding(frequencies, width)
        self.normal_embed = nn.Linear(3, width)
        self.encoder_cross = CrossAttentionBlock(width, heads)
        self.encoder_blocks = nn.ModuleList(Block(width, heads) for _ in range(config["encoder_layers"]))
        self.to_moments = nn.Linear(width, 2 * self.latent_channels)

        self.from_latent = nn.Linear(self.latent_channels, width)
        self.decoder_blocks = nn.ModuleList(Block(width, heads) for _ in range(config["decoder_layers"]))
        field = []
        for _ in range(config.get("query_field_layers", 2)):
            field += [nn.GELU(approximate="tanh"), nn.Linear(width, width)]
        self.query_field = nn.Sequential(*field)
        self.query_norm = nn.LayerNorm(width, eps=1e-6)
        self.token_norm = nn.LayerNorm(width, eps=1e-6)
        self.query_attn = Attention(width, heads)
        self.to_sdf = nn.Sequential(nn.LayerNorm(width, eps=1e-6), nn.Linear(width, width),
                                    nn.GELU(approximate="tanh"), nn.Linear(width, 1))

    def encode(self, points: torch.Tensor, normals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Surface points and unit normals [B, N, 3] -> (mean, logvar) [B, tokens, channels]."""
        features = self.point_embed(points) + self.normal_embed(normals)
        anchors = farthest_point_indices(points, self.latent_tokens)
        queries = torch.gather(features, 1, anchors[..., None].expand(-1, -1, features.shape[-1]))
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
        h = self.point_embed(points)
        h = h + self.query_field(h)
        x = self.query_attn(self.query_norm(h), self.token_norm(tokens))
        if self.config.get("query_residual", True):
            x = x + h
        return self.to_sdf(x).squeeze(-1)


def farthest_point_indices(points: torch.Tensor, count: int) -> torch.Tensor:
    """Indices [B, count] of a farthest-point subsample of points [B, N, 3], starting from point 0
    (deterministic, so a shape always encodes the same way)."""
    b, n, _ = points.shape
    if count >= n:
        return torch.arange(n, device=points.device).expand(b, -1)
    chosen = torch.zeros(b, count, dtype=torch.long, device=points.device)
    distance = torch.full((b, n), float("inf"), device=points.device)
    rows = torch.arange(b, device=points.device)
    current = torch.zeros(b, dtype=torch.long, device=points.device)
    for i in range(count):
        chosen[:, i] = current
        step = (points - points[rows, current][:, None]).square().sum(-1)
        distance = torch.minimum(distance, step)
        current = distance.argmax(dim=1)
    return chosen

