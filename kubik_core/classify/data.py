"""Datasets, transforms and batch sampling for training and evaluation.

Two properties matter more than speed here:

- Labels are always indices into the ONE class map of the split (never re-derived), and every
  image goes through the same decode (``images.decode_image``) in train, eval and predict.
- A run's numbers do not depend on how many processes compute them. ``GlobalBatchSampler`` draws
  the same global batches for any world size and gives each rank an equal slice, and augmentation
  randomness is seeded per (seed, epoch, sample), so one process and a 2-process torchrun see
  identical inputs.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .classmap import ClassMap, require_labels_known
from .fetch import FailureLog, FetchConfig, FetchError, Fetcher
from .images import ImageError, decode_image, load_image
from .manifest import Sample
from .smartcrop import SmartCrop


@dataclass
class AugmentConfig:
    """Training augmentation (timm's transforms); the defaults suit natural photos."""
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    color_jitter: float = 0.4
    randaugment: str | None = "rand-m9-mstd0.5-inc1"   # timm RandAugment spec, None = off
    random_erasing: float = 0.0


def build_transform(data_config: dict, training: bool, augment: AugmentConfig | None = None,
                    smart_crop: bool = False):
    """timm's standard transform for ``data_config`` (input_size, mean, std, interpolation,
    crop_pct), with a saliency crop in front when ``smart_crop``."""
    from timm.data import create_transform
    from torchvision import transforms

    common = dict(input_size=tuple(data_config["input_size"]), mean=tuple(data_config["mean"]),
                  std=tuple(data_config["std"]), interpolation=data_config["interpolation"])
    if training:
        aug = augment or AugmentConfig()
        transform = create_transform(is_training=True, scale=aug.scale, ratio=aug.ratio,
                                     hflip=aug.hflip, color_jitter=aug.color_jitter,
                                     auto_augment=aug.randaugment, re_prob=aug.random_erasing,
                                     **common)
    else:
        transform = create_transform(is_training=False, crop_pct=data_config["crop_pct"], **common)
    if smart_crop:
        aspect = data_config["input_size"][2] / data_config["input_size"][1]
        transform = transforms.Compose([SmartCrop(aspect), *transform.transforms])
    return transform


class ImageSource:
    """Opens a sample's image, local or URL (URLs through the caching ``Fetcher``)."""

    def __init__(self, fetch_config: FetchConfig | None = None):
        self.fetch_config = fetch_config
        self._fetcher = None  # created lazily: each DataLoader worker gets its own session

    def open(self, sample: Sample):
        if not sample.is_url:
            return load_image(sample.path)
        if self.fetch_config is None:
            raise FetchError(sample.path, "URL samples need a download cache (--cache-dir)", True)
        if self._fetcher is None:
            self._fetcher = Fetcher(self.fetch_config)
        return decode_image(self._fetcher.get(sample.path), sample.path)

    def __getstate__(self):
        return {"fetch_config": self.fetch_config, "_fetcher": None}


class ManifestDataset(Dataset):
    """(image tensor, class index, sample index) per sample; unusable images yield None and are
    recorded in ``failures`` (a FailureLog) instead of stopping the run."""

    def __init__(self, samples: Sequence[Sample], class_map: ClassMap, transform,
                 source: ImageSource | None = None, failures: FailureLog | None = None,
                 seed: int = 0):
        require_labels_known(class_map, [s.label for s in samples], "the manifest")
        self.samples = list(samples)
        self.targets = [class_map.index(s.label) for s in self.samples]
        self.transform = transform
        self.source = source or ImageSource()
        self.failures = failures
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int):
        sample = self.samples[index]
        try:
            image = self.source.open(sample)
        except (ImageError, FetchError) as exc:
            if self.failures is not None:
                self.failures.record(sample.path, str(exc), label=sample.label)
            return None
        # Augmentation randomness depends on the sample, not on which worker/rank draws it.
        sample_seed = (self.seed * 1_000_003 + self.epoch) * 10_000_019 + index
        random.seed(sample_seed)
        np.random.seed(sample_seed % (2 ** 32))
        torch.manual_seed(sample_seed % (2 ** 63))
        return self.transform(image), self.targets[index], index


def collate_skipping_failures(batch):
    """Stack a batch, dropping samples whose image failed; None when nothing is left."""
    batch = [item for item in batch if item is not None]
    if not batch:
        return None
    images, targets, indices = zip(*batch)
    return torch.stack(images), torch.tensor(targets), torch.tensor(indices)


class GlobalBatchSampler(torch.utils.data.Sampler):
    """This rank's slice of world-size-independent global batches.

    Each epoch draws one order of the dataset (a permutation, or class-balanced draws with
    replacement when ``weights`` are given) from ``seed`` and the epoch; it is cut into global
    batches of ``global_batch`` and rank r takes the r-th of ``world_size`` equal slices.
    """

    def __init__(self, size: int, global_batch: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0, weights: torch.Tensor | None = None, drop_last: bool = True):
        if global_batch % world_size:
            raise ValueError(f"batch size {global_batch} must be divisible by the number of "
                             f"processes ({world_size})")
        if drop_last and size < global_batch:
            raise ValueError(f"the training set has {size} images, fewer than one batch "
                             f"({global_batch}); lower --batch-size")
        self.size, self.global_batch = size, global_batch
        self.rank, self.world_size = rank, world_size
        self.local_batch = global_batch // world_size
        self.seed, self.weights, self.drop_last = seed, weights, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        full, rest = divmod(self.size, self.global_batch)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is None:
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.multinomial(self.weights, self.size, replacement=True, generator=generator)
        for b in range(len(self)):
            batch = order[b * self.global_batch:(b + 1) * self.global_batch]
            per_rank = -(-len(batch) // self.world_size)
            yield batch[self.rank * per_rank:(self.rank + 1) * per_rank].tolist()


def class_balanced_weights(targets: Sequence[int], num_classes: int, power: float = 1.0) -> torch.Tensor:
    """Per-sample weights ~ count(class)^-power: power 1 draws every class equally often."""
    counts = torch.bincount(torch.as_tensor(targets), minlength=num_classes).clamp(min=1).double()
    return counts[torch.as_tensor(targets)] ** -power


def class_counts(targets: Sequence[int], num_classes: int) -> torch.Tensor:
    return torch.bincount(torch.as_tensor(targets, dtype=torch.long), minlength=num_classes)
