"""Mixed precision: one vocabulary for every command that runs a network.

``--precision`` takes:

- ``auto``: bf16 autocast where the device runs it natively (a CUDA GPU with bf16 support),
  full fp32 everywhere else;
- ``fp32``: no autocast (``none`` is accepted as the same word: classifier commands spelled it
  so with their older ``--amp`` flag);
- ``bf16`` / ``fp16``: autocast to that type on the device. Weights stay fp32 either way; fp16
  training also needs a gradient scaler (:func:`needs_grad_scaler`).

The words and their check import no torch (command-line parsers use them while ``kubik --help``
stays fast); torch is imported by the functions that build an autocast context.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ALIASES = {"none": "fp32"}


def check_precision(value: str, flag: str = "--precision") -> str:
    """The vocabulary's word for ``value`` (``none`` -> ``fp32``); ValueError naming ``flag``
    and the words it takes otherwise."""
    word = ALIASES.get(value, value) if isinstance(value, str) else value
    if word not in PRECISIONS:
        raise ValueError(f"{flag} must be one of {', '.join(PRECISIONS)} "
                         f"('none' also means fp32), got {value!r}")
    return word


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The dtype ``precision`` autocasts to on ``device``, or None for plain fp32."""
    import torch

    word = check_precision(precision)
    if word == "auto":
        native_bf16 = device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if native_bf16 else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(word)


def autocast(device: torch.device, precision: str):
    """A context manager running its block in ``precision`` on ``device`` (a no-op for fp32)."""
    import torch

    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def needs_grad_scaler(device: torch.device, precision: str) -> bool:
    """True when training in ``precision`` needs a ``torch.amp.GradScaler`` (fp16: small
    gradients would underflow without one)."""
    import torch

    return autocast_dtype(device, precision) == torch.float16
