"""Losses and batch mixing for training.

Logit adjustment (Menon et al., ICLR 2021; the same as Balanced Softmax, Ren et al., NeurIPS
2020, at tau = 1) adds ``tau * log(prior)`` to the logits inside the training loss only. The
network then learns class scores free of the training-set frequencies, so plain argmax at test
time stops favouring the head classes. timm has no such loss, hence this module.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class ClassificationLoss(torch.nn.Module):
    """Cross-entropy with label smoothing and soft (mixup) targets, optionally logit-adjusted."""

    def __init__(self, num_classes: int, label_smoothing: float = 0.0,
                 class_counts: torch.Tensor | None = None, tau: float = 1.0):
        super().__init__()
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        if class_counts is not None:
            prior = class_counts.double().clamp(min=1) / class_counts.double().clamp(min=1).sum()
            self.register_buffer("adjustment", (tau * prior.log()).float(), persistent=False)
        else:
            self.adjustment = None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.adjustment is not None:
            logits = logits + self.adjustment.to(logits.device)
        if target.ndim == 1:
            return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
        soft = target * (1 - self.label_smoothing) + self.label_smoothing / self.num_classes
        return torch.sum(-soft * F.log_softmax(logits, dim=-1), dim=-1).mean()


class MixupCutmix:
    """Mixup (alpha) and CutMix (alpha) on a batch, one of them per batch, as in timm.

    Randomness comes from a generator seeded per global step, so ranks agree on lambda and on
    which of the two is used; samples are paired within each rank's slice (like timm).
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
                 prob: float = 1.0, switch_prob: float = 0.5, seed: int = 0):
        self.num_classes = num_classes
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.seed = prob, switch_prob, seed

    @property
    def enabled(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, images: torch.Tensor, target: torch.Tensor, step: int):
        one_hot = F.one_hot(target, self.num_classes).float()
        g = torch.Generator().manual_seed(self.seed * 7_919 + step)
        if not self.enabled or torch.rand((), generator=g).item() >= self.prob:
            return images, one_hot
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha <= 0 or torch.rand((), generator=g).item() < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = _beta(alpha, g)
        flipped = images.flip(0)
        if use_cutmix:
            h, w = images.shape[-2:]
            cut_h, cut_w = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
            cy = int(torch.randint(h, (), generator=g))
            cx = int(torch.randint(w, (), generator=g))
            y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
            x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
            images = images.clone()
            images[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
            lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
        else:
            images = images * lam + flipped * (1 - lam)
        return images, one_hot * lam + one_hot.flip(0) * (1 - lam)


def _beta(alpha: float, generator: torch.Generator) -> float:
    """A Beta(alpha, alpha) draw from a seeded generator (Johnk's method; torch's Beta has no
    generator argument)."""
    while True:
        u = torch.rand(2, generator=generator, dtype=torch.float64)
        a, b = u[0].item() ** (1 / alpha), u[1].item() ** (1 / alpha)
        if 0 < a + b <= 1:
            return a / (a + b)
