"""Check a model built from a config against a safetensors file before allocating it.

A model file's config (a classifier card, a 3D model config) is written by whoever made the file.
A crafted config can ask for a model of tens of GB in a file of a few hundred bytes. Here the model
is first built on torch's meta device (no memory), its parameter names and shapes are compared with
the tensors the file's header declares (safetensors checks that those fit inside the file), and
only a model that matches is built for real, so a load never allocates more than the file holds.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import torch

from .safetensors_file import SafetensorsFileError, open_safetensors


class WeightsFileError(ValueError):
    """A weights file that cannot be read, or that does not match the model its config describes."""


def tensor_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from the file's header, without reading the tensors."""
    try:
        with open_safetensors(path, Path(path).name) as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except SafetensorsFileError as exc:
        raise WeightsFileError(str(exc)) from None


def _describe(names: list[str], limit: int = 3) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_matches(model: torch.nn.Module, shapes: dict[str, tuple[int, ...]], what: str) -> None:
    """Raise WeightsFileError unless ``model``'s state dict has exactly ``shapes``."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s): {_describe(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor(s): {_describe(unexpected)}")
        raise WeightsFileError(f"{what}: the weights do not match the model its config describes "
                               f"({'; '.join(parts)})")
    wrong = sorted(key for key in expected if expected[key] != shapes[key])
    if wrong:
        first = wrong[0]
        raise WeightsFileError(f"{what}: {len(wrong)} tensor(s) have another shape than the config "
                               f"gives ({first}: file {list(shapes[first])}, config "
                               f"{list(expected[first])})")


def build_checked(build: Callable[[], torch.nn.Module], path: str | os.PathLike,
                  what: str | None = None) -> torch.nn.Module:
    """``build()`` on the meta device, checked against ``path``'s header, then built for real.

    The real build happens only after the check, so its size is bounded by the file's. Raise
    WeightsFileError naming the file and the first mismatch otherwise.
    """
    what = what or Path(path).name
    shapes = tensor_shapes(path)
    with torch.device("meta"):
        probe = build()
    check_matches(probe, shapes, what)
    del probe
    return build()


def parameter_count(shapes: dict[str, tuple[int, ...]]) -> int:
    """Total number of values the header declares."""
    return sum(math.prod(shape) for shape in shapes.values())
