"""Real test data for the classify tests: scikit-learn's digits written as PNG files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# A ResNet-18 layout with narrow channels: trains on 32 px digits in seconds on a CPU.
TINY_RESNET = {"channels": [16, 32, 64, 128], "stem_width": 16}
# A 4-block ViT on 32 px inputs with 4 px patches (LayerNorm: no batch statistics).
TINY_VIT = {"img_size": 32, "patch_size": 4, "embed_dim": 48, "depth": 2, "num_heads": 3}
# Digits are 8x8 and upright: no flips, mild crops, no colour jitter.
DIGIT_AUGMENT = {"scale": (0.6, 1.0), "ratio": (0.9, 1.1), "hflip": 0.0, "color_jitter": 0.0,
                 "randaugment": None}


def write_digits(root: Path, indices=None) -> Path:
    """scikit-learn digits as 8-bit greyscale PNGs in root/<digit>/<index>.png."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    chosen = range(len(digits.target)) if indices is None else indices
    for i in chosen:
        folder = root / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8), "L").save(folder / f"{i:04d}.png")
    return root


def long_tailed_indices(seed: int, largest: int = 120, ratio: float = 40.0, exclude=()):
    """Digit indices with class c keeping largest * ratio**(-c/9) images (120 down to 3)."""
    from sklearn.datasets import load_digits

    targets = load_digits().target
    rng = np.random.default_rng(seed)
    excluded = set(exclude)
    chosen = []
    for c in range(10):
        pool = [i for i in np.flatnonzero(targets == c) if i not in excluded]
        keep = max(2, int(round(largest * ratio ** (-c / 9))))
        chosen += sorted(rng.choice(pool, size=keep, replace=False).tolist())
    return chosen
