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

import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .classmap import ClassMap, require_labels_known
from .fetch import FAILURES_FILE, FailureLog, FetchConfig, FetchError, Fetcher
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

    def __post_init__(self):
        """Bad values fail here, named by their command-line flag, before any data is read."""
        self.scale, self.ratio = tuple(self.scale), tuple(self.ratio)
        if not (len(self.scale) == 2 and _number(self.scale[0], 0.0, 1.0)
                and _number(self.scale[1], 0.0, 1.0) and 0 < self.scale[0] <= self.scale[1]):
            raise ValueError(f"--scale-min must be above 0 and at most 1, got {self.scale[0]!r}")
        if not (len(self.ratio) == 2 and all(_number(r, 0.01, 100.0) for r in self.ratio)
                and self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"the crop aspect ratio range must be two numbers from 0.01 to 100, "
                             f"low first, got {self.ratio!r}")
        for flag, value, hi in (("--hflip", self.hflip, 1.0), ("--color-jitter", self.color_jitter, 10.0),
                                ("--reprob", self.random_erasing, 1.0)):
            if not _number(value, 0.0, hi):
                raise ValueError(f"{flag} must be a number from 0 to {hi:g}, got {value!r}")
        self.randaugment = check_augment_policy(self.randaugment)


def _number(value, lo: float, hi: float) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            and lo <= value <= hi)


# timm's augmentation policies and, per policy, the numeric sections it reads with their ranges
# (timm ignores or asserts on anything else, and 'n100000' would apply 100,000 ops per image).
_POLICY_SECTIONS = {
    "rand": {"m": (0, 30), "n": (1, 10), "mstd": (0, 101), "mmax": (0, 30), "inc": (0, 1), "p": (0, 1)},
    "augmix": {"m": (0, 30), "w": (1, 10), "d": (-1, 10), "a": (0, 10), "b": (0, 1), "mstd": (0, 101)},
    **{name: {"mstd": (0, 101)} for name in ("original", "originalr", "v0", "v0r", "3a")},
}
_SECTION = re.compile(r"([a-z]+)(-?\d+(?:\.\d+)?)")
_POLICY_EXAMPLES = "e.g. 'rand-m9-mstd0.5-inc1', 'augmix-m5-w3', 'original', or 'none'"


def check_augment_policy(spec: str | None) -> str | None:
    """A timm auto-augment spec checked section by section; None for 'none'/empty."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "none")):
        return None
    if not isinstance(spec, str) or len(spec) > 100:
        raise ValueError(f"--randaugment must be a timm augmentation spec ({_POLICY_EXAMPLES})")
    policy, *sections = spec.split("-")
    allowed = _POLICY_SECTIONS.get(policy)
    if allowed is None:
        raise ValueError(f"--randaugment {spec!r}: unknown policy {policy!r} (known: "
                         f"{', '.join(_POLICY_SECTIONS)}); {_POLICY_EXAMPLES}")
    for section in sections:
        if policy == "rand" and re.fullmatch(r"t[a-z0-9_]+", section):
            continue  # a named transform set (timm's rand_augment_choices)
        match = _SECTION.fullmatch(section)
        if not match or match[1] not in allowed:
            raise ValueError(f"--randaugment {spec!r}: {section!r} is not a section of a {policy!r} "
                             f"policy (known: {', '.join(allowed)}); {_POLICY_EXAMPLES}")
        lo, hi = allowed[match[1]]
        if not lo <= float(match[2]) <= hi:
            raise ValueError(f"--randaugment {spec!r}: {match[1]} must be from {lo} to {hi}, "
                             f"got {match[2]}")
    try:  # timm has the last word on the transform names
        build_transform({"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3,
                         "interpolation": "bilinear", "crop_pct": 1.0}, True,
                        AugmentConfig(randaugment=None), smart_crop=False, auto_augment=spec)
    except (AssertionError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"--randaugment {spec!r}: timm refuses it ({exc}); {_POLICY_EXAMPLES}") from None
    return spec


def build_transform(data_config: dict, training: bool, augment: AugmentConfig | None = None,
                    smart_crop: bool = False, auto_augment: str | None = None):
    """timm's standard transform for ``data_config`` (input_size, mean, std, interpolation,
    crop_pct), with a saliency crop in front when ``smart_crop``. ``auto_augment`` overrides
    the augment config's policy (used to test a spec)."""
    from timm.data import create_transform
    from torchvision import transforms

    common = dict(input_size=tuple(data_config["input_size"]), mean=tuple(data_config["mean"]),
                  std=tuple(data_config["std"]), interpolation=data_config["interpolation"])
    if training:
        aug = augment or AugmentConfig()
        transform = create_transform(is_training=True, scale=aug.scale, ratio=aug.ratio,
                                     hflip=aug.hflip, color_jitter=aug.color_jitter,
                                     auto_augment=auto_augment or aug.randaugment,
                                     re_prob=aug.random_erasing,
                                     **common)
    else:
        transform = create_transform(is_training=False, crop_pct=data_config["crop_pct"], **common)
    aspect = data_config["input_size"][2] / data_config["input_size"][1]
    head = [SmartCrop(aspect)] if smart_crop else []
    if not training:  # training's random crop comes first and needs no guard
        head.insert(0, LimitAspect(MAX_ASPECT * max(aspect, 1 / aspect)))
    return transforms.Compose([*head, *transform.transforms]) if head else transform


MAX_ASPECT = 8.0


class LimitAspect:
    """Centre-crop the long side to at most ``max_ratio`` times the short one (PIL -> PIL).

    Evaluation resizes the short side to the model's input size, so a 1 x 100,000 px strip
    would become 224 x 22 million px (GBs) before the centre crop throws nearly all of it away.
    Cutting the strip first keeps memory bounded and changes nothing the centre crop keeps.
    """

    def __init__(self, max_ratio: float = MAX_ASPECT):
        self.max_ratio = max_ratio

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        if width > height * self.max_ratio:
            keep = max(1, int(height * self.max_ratio))
            left = (width - keep) // 2
            return image.crop((left, 0, left + keep, height))
        if height > width * self.max_ratio:
            keep = max(1, int(width * self.max_ratio))
            top = (height - keep) // 2
            return image.crop((0, top, width, top + keep))
        return image

    def __repr__(self) -> str:
        return f"LimitAspect(max_ratio={self.max_ratio:g})"


class ImageSource:
    """Opens a sample's image, local or URL (URLs through the caching ``Fetcher``).

    ``processes``: how many training processes fetch at once (torchrun's world size); with the
    DataLoader workers of each, they share ``requests_per_second`` between them. URLs recorded
    in the cache's failures.jsonl are not asked for again (``kubik classify fetch`` retries
    them); new URL failures are added there.
    """

    def __init__(self, fetch_config: FetchConfig | None = None, processes: int = 1):
        self.fetch_config = fetch_config
        self.processes = processes
        self._fetcher = None  # created lazily: each DataLoader worker gets its own session
        self.url_failures = (FailureLog(Path(fetch_config.cache_dir) / FAILURES_FILE)
                             if fetch_config is not None else None)

    def open(self, sample: Sample):
        if not sample.is_url:
            return load_image(sample.path)
        if self.fetch_config is None:
            raise FetchError(sample.path, "URL samples need a download cache (--cache-dir)", True)
        fetcher = self._get_fetcher()
        if not fetcher.cached(sample.path) and sample.path in self.url_failures:
            raise FetchError(sample.path, f"failed before (listed in {FAILURES_FILE} of the cache); "
                             "`kubik classify fetch` retries it", True)
        try:
            return decode_image(fetcher.get(sample.path), sample.path)
        except ImageError as exc:
            fetcher.cache_path(sample.path).unlink(missing_ok=True)  # a corrupt file must not stay
            self.url_failures.record(sample.path, str(exc))
            raise
        except FetchError as exc:
            self.url_failures.record(sample.path, exc.reason)
            raise

    def _get_fetcher(self) -> Fetcher:
        if self._fetcher is None:
            worker = torch.utils.data.get_worker_info()
            workers = worker.num_workers if worker is not None else 1
            self._fetcher = Fetcher(self.fetch_config, share=workers * max(1, self.processes))
        return self._fetcher

    def __getstate__(self):
        return {**self.__dict__, "_fetcher": None}


class ManifestDataset(Dataset):
    """(image tensor, class index, sample index) per sample.

    An unusable image is recorded in ``failures`` (a FailureLog) instead of stopping the run.
    For evaluation (``refill=False``) the item is None and the collate drops it. For training
    (``refill=True``) another image of the set stands in for it, drawn from (seed, epoch, index),
    so that every batch stays full: a batch shrunk to one image breaks BatchNorm, and a
    placeholder image would skew its running statistics. The item then carries the stand-in's
    class and index. None comes back only when no image of the set loads any more.
    """

    def __init__(self, samples: Sequence[Sample], class_map: ClassMap, transform,
                 source: ImageSource | None = None, failures: FailureLog | None = None,
                 seed: int = 0, refill: bool = False):
        require_labels_known(class_map, [s.label for s in samples], "the manifest")
        self.samples = list(samples)
        self.targets = [class_map.index(s.label) for s in self.samples]
        self.transform = transform
        self.source = source or ImageSource()
        self.failures = failures
        self.seed = seed
        self.refill = refill
        self.epoch = 0
        self._unusable: set[int] = set()  # this process's known-bad indices (skipped as stand-ins)

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def try_open(self, index: int):
        """The image of sample ``index``, or None after recording why it cannot be used."""
        sample = self.samples[index]
        try:
            return self.source.open(sample)
        except (ImageError, FetchError) as exc:
            self._unusable.add(index)
            if self.failures is not None:
                self.failures.record(sample.path, str(exc), label=sample.label)
            return None

    def first_loadable(self) -> int | None:
        """Index of the first sample whose image loads, None when none does (a check before a run)."""
        return next((i for i in range(len(self)) if self.try_open(i) is not None), None)

    def _sample_seed(self, index: int) -> int:
        return (self.seed * 1_000_003 + self.epoch) * 10_000_019 + index

    def _stand_in(self, index: int):
        """(image, index) of the first usable sample after a seeded random start, or (None, index)."""
        start = random.Random(self._sample_seed(index)).randrange(len(self))
        for step in range(len(self)):
            other = (start + step) % len(self)
            if other == index or other in self._unusable or self._recorded(other):
                continue
            image = self.try_open(other)
            if image is not None:
                return image, other
        return None, index

    def _recorded(self, index: int) -> bool:
        """Recorded as unusable, perhaps by another DataLoader worker or an earlier epoch."""
        return self.failures is not None and self.samples[index].path in self.failures

    def __getitem__(self, slot: int):
        image, index = self.try_open(slot), slot
        if image is None and self.refill:
            image, index = self._stand_in(slot)
        if image is None:
            return None
        # Augmentation randomness depends on the slot, not on which worker/rank draws it.
        sample_seed = self._sample_seed(slot)
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
