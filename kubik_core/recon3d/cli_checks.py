"""Up-front checks of `kubik 3d` arguments: each bad value becomes one CommandError line before
any work starts (not a traceback, not one failure per mesh, not an hour of training lost to an
output file that cannot be written)."""
from __future__ import annotations

import math
import os
from pathlib import Path

from ..common.commands import CommandError

MAX_SEED = 2 ** 64 - 1   # what torch.Generator.manual_seed and numpy's default_rng take


def count(value: int, flag: str, *, low: int = 1, high: int | None = None) -> int:
    """An integer argument in low..high."""
    if value < low or (high is not None and value > high):
        bound = f"from {low} to {high:,}" if high is not None else f"at least {low}"
        raise CommandError(f"{flag} must be {bound}, got {value:,}")
    return value


def seed(value: int, flag: str = "--seed") -> int:
    return count(value, flag, low=0, high=MAX_SEED)


def positive(value: float, flag: str, *, zero: bool = False) -> float:
    """A finite number above 0 (or at least 0 with ``zero``)."""
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise CommandError(f"{flag} must be {'zero or positive' if zero else 'positive'} (a finite number), "
                           f"got {value}")
    return value


def output_folder(path, flag: str) -> Path:
    """A folder that exists or can be made, and can be written in."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CommandError(f"{flag} {path}: is a file, not a folder; choose a folder")
    _writable(path, flag)
    return path


def output_file(path, flag: str) -> Path:
    """A file path whose folder exists or can be made and can be written in; not a folder."""
    path = Path(path)
    if path.is_dir():
        raise CommandError(f"{flag} {path}: is a folder; give a file name in it")
    _writable(path.parent, flag)
    return path


def _writable(folder: Path, flag: str) -> None:
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise CommandError(f"{flag} {folder}: {existing} is a file, so no folder can be made there")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CommandError(f"{flag} {folder}: cannot write in {existing} (permission denied or a read-only "
                           "file system); choose another place")


def torch_device(name: str) -> str:
    """``auto`` -> cuda when torch sees a GPU, else cpu; ``cpu``; ``cuda`` / ``cuda:N`` only when
    that GPU exists."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return name
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name[5:]) if ":" in name else 0
        if index >= available:
            found = f"only {available} GPU(s) here" if available else "no CUDA GPU is available here"
            raise CommandError(f"--device {name}: {found}; use --device cpu (or auto)")
        return name
    raise CommandError(f"--device {name!r}: unknown device; use cpu, cuda, cuda:N or auto")
