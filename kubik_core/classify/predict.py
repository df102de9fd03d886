"""A loaded classifier applied to images: the same decode and transform as evaluation."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch
from PIL import Image

from ..common.precision import autocast, check_precision
from .data import build_transform
from .model import ModelCard, load_classifier_model


@dataclass
class Prediction:
    labels: list[str]      # best first
    scores: list[float]    # softmax probabilities, same order

    def to_dict(self) -> dict:
        return {"labels": self.labels, "scores": self.scores}


class Classifier:
    """An exported classifier ready to run: model + model card + eval transform."""

    def __init__(self, model: torch.nn.Module, card: ModelCard, device: torch.device | str = "cpu",
                 amp: str = "fp32", channels_last: bool = False, compile: bool = False,
                 source: str = ""):
        """``amp``: a precision word (auto, fp32, bf16, fp16: :mod:`kubik_core.common.precision`);
        ``channels_last`` and ``compile`` (torch.compile) are the GPU speed-ups measured in
        benchmarks/classify_infer.py."""
        self.model, self.card, self.source = model, card, source
        self.device = torch.device(device)
        self.amp, self.channels_last = check_precision(amp, "amp"), channels_last
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self._forward = torch.compile(model) if compile else model
        self._transforms = {}

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.float32, name: str | None = None, **kwargs) -> "Classifier":
        """``name``: how errors call the file (default: the path as given)."""
        model, card = load_classifier_model(path, device, dtype, name=name)
        return cls(model, card, device, source=str(path), **kwargs)

    @property
    def classes(self) -> list[str]:
        return list(self.card.classes)

    def transform(self, smart_crop: bool | None = None):
        crop = self.card.smart_crop if smart_crop is None else smart_crop
        if crop not in self._transforms:
            self._transforms[crop] = build_transform(
                {"input_size": self.card.input_size, "mean": self.card.mean, "std": self.card.std,
                 "interpolation": self.card.interpolation, "crop_pct": self.card.crop_pct},
                training=False, smart_crop=crop)
        return self._transforms[crop]

    @torch.no_grad()
    def probabilities(self, images: Sequence[Image.Image], smart_crop: bool | None = None,
                      batch_size: int = 32) -> torch.Tensor:
        """[N, num_classes] softmax probabilities for RGB PIL images."""
        if not images:
            raise ValueError("no images to classify")
        transform = self.transform(smart_crop)
        out = []
        for i in range(0, len(images), batch_size):
            batch = torch.stack([transform(im) for im in images[i:i + batch_size]])
            out.append(self.logits(batch).float().softmax(dim=-1).cpu())
        return torch.cat(out)

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw logits for an already transformed [N, C, H, W] batch, on the classifier's device."""
        batch = batch.to(self.device, dtype=next(self.model.parameters()).dtype, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.amp):
            return self._forward(batch)

    def predict(self, images: Sequence[Image.Image], top_k: int = 5, threshold: float = 0.0,
                smart_crop: bool | None = None) -> list[Prediction]:
        """Top-k labels and scores per image; labels scoring below ``threshold`` are dropped."""
        probs = self.probabilities(images, smart_crop)
        k = max(1, min(top_k, probs.shape[1]))
        scores, indices = probs.topk(k, dim=1)
        results = []
        for row_scores, row_indices in zip(scores.tolist(), indices.tolist()):
            kept = [(self.card.classes[i], s) for i, s in zip(row_indices, row_scores) if s >= threshold]
            results.append(Prediction([label for label, _ in kept], [s for _, s in kept]))
        return results

