"""The bounded schema of a classifier's model card and of the timm keyword arguments it carries.

A model card is written by whoever made the classifier file, so it is treated as hostile: a
few hundred bytes could otherwise ask timm for a model of tens of GB (``num_classes`` or
``embed_dim`` in the millions), reach the network (``hf-hub:`` architecture names,
``pretrained_cfg`` with a URL) or read other files (``checkpoint_path``, ``cache_dir``). Here:

- the card's JSON is parsed with ``bounded_json`` (depth, size, finite numbers);
- every key must be known, every value of the right type and within its range;
- the architecture must be a plain timm registry name (``timm.is_model``, no ``:`` or ``/``);
- ``model_kwargs`` may only hold the architecture-shaping arguments listed in
  ``MODEL_KWARG_RULES`` (sizes, depths, dropout rates, pooling), each bounded. Anything that
  names a file, a URL, a cache, a device or pretrained weights is refused.

The same rules check ``kubik classify train --model-kwargs``, so every model that trains can be
loaded again. Sizes allowed here are further bounded when loading: the model is built on the meta
device and must match the tensors its safetensors file declares (``common.weights``).
"""
from __future__ import annotations

import math
import re
import unicodedata
from typing import Any, Callable

from ..common.bounded_json import BoundedJSONError
from ..common.bounded_json import loads as bounded_loads

FORMAT = "kubik-classifier"
FORMAT_VERSION = 1
MAX_CARD_BYTES = 16 * 1024 * 1024
MAX_CLASSES = 100_000               # iNaturalist has 10,000, ImageNet-21k 21,841
MAX_CLASS_NAME = 200
MAX_INPUT_SIDE = 2048
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")
_ARCHITECTURE = re.compile(r"[A-Za-z0-9_]{1,100}(\.[A-Za-z0-9_]{1,100})?")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class CardError(ValueError):
    """A model card or a set of timm keyword arguments outside the schema (one clear line)."""


Rule = Callable[[Any, str], Any]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(lo: int, hi: int) -> Rule:
    def check(value, name):
        if not _is_int(value) or not lo <= value <= hi:
            raise CardError(f"{name} must be an integer from {lo} to {hi}, got {_show(value)}")
        return value
    return check


def _float(lo: float, hi: float, *, allow_none: bool = False) -> Rule:
    def check(value, name):
        if value is None and allow_none:
            return None
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or not lo <= value <= hi):
            raise CardError(f"{name} must be a number from {lo:g} to {hi:g}"
                            f"{' or null' if allow_none else ''}, got {_show(value)}")
        return float(value)
    return check


def _bool(value, name):
    if not isinstance(value, bool):
        raise CardError(f"{name} must be true or false, got {_show(value)}")
    return value


def _choice(*choices: str) -> Rule:
    def check(value, name):
        if value not in choices:
            raise CardError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, "
                            f"got {_show(value)}")
        return value
    return check


def _ints(lo: int, hi: int, max_len: int, *, single: bool = False) -> Rule:
    """A list of 1..max_len integers in [lo, hi]; ``single``: a lone integer is accepted too."""
    def check(value, name):
        if single and _is_int(value):
            return _int(lo, hi)(value, name)
        if (not isinstance(value, list) or not 1 <= len(value) <= max_len
                or not all(_is_int(v) and lo <= v <= hi for v in value)):
            either = "an integer or " if single else ""
            raise CardError(f"{name} must be {either}a list of 1 to {max_len} integers from {lo} "
                            f"to {hi}, got {_show(value)}")
        return list(value)
    return check


# The timm keyword arguments a card (or --model-kwargs) may carry: they shape the network and
# nothing else. Bounds are generous for real models and keep a meta-device build quick.
_RATE = _float(0.0, 0.99)
MODEL_KWARG_RULES: dict[str, Rule] = {
    # any architecture
    "drop_rate": _RATE, "drop_path_rate": _RATE, "attn_drop_rate": _RATE, "proj_drop_rate": _RATE,
    "pos_drop_rate": _RATE, "patch_drop_rate": _RATE, "drop_block_rate": _RATE,
    "global_pool": _choice("avg", "max", "avgmax", "catavgmax", "token", "map", "fast"),
    "output_stride": _choice(8, 16, 32),
    # vision transformers and relatives
    "img_size": _ints(8, MAX_INPUT_SIDE, 2, single=True),
    "patch_size": _ints(1, 64, 2, single=True),
    "embed_dim": _ints(8, 4096, 8, single=True),
    "depth": _int(1, 64),
    "num_heads": _ints(1, 64, 8, single=True),
    "mlp_ratio": _float(0.25, 16.0),
    "qkv_bias": _bool, "qk_norm": _bool, "class_token": _bool, "no_embed_class": _bool,
    "reg_tokens": _int(0, 64), "pre_norm": _bool, "fc_norm": _bool, "dynamic_img_size": _bool,
    "init_values": _float(0.0, 10.0, allow_none=True),
    "window_size": _ints(1, 24, 2, single=True),
    # ResNets and relatives
    "layers": _ints(1, 64, 8), "channels": _ints(1, 4096, 8), "stem_width": _int(1, 1024),
    "stem_type": _choice("", "deep", "deep_tiered"), "base_width": _int(1, 1024),
    "cardinality": _int(1, 256), "avg_down": _bool,
    # ConvNeXt and relatives
    "depths": _ints(1, 64, 8), "dims": _ints(1, 4096, 8), "ls_init_value": _float(0.0, 10.0, allow_none=True),
    "conv_mlp": _bool, "head_norm_first": _bool, "use_grn": _bool,
    # EfficientNet / MobileNet
    "channel_multiplier": _float(0.1, 8.0), "depth_multiplier": _float(0.1, 8.0),
    "fix_stem": _bool, "num_features": _int(8, 8192), "stem_size": _int(4, 1024),
}


def _show(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_architecture(name) -> str:
    """A plain timm registry name (``resnet18``, ``resnet18.a1_in1k``), never a hub id or a path."""
    if not isinstance(name, str) or not _ARCHITECTURE.fullmatch(name):
        raise CardError(f"architecture must be a timm model name such as 'resnet18' (letters, "
                        f"digits, '_', one optional '.tag'; no 'hf-hub:' prefix, '/' or ':'), "
                        f"got {_show(name)}")
    import timm

    if not timm.is_model(name):
        stem = name.split(".")[0].split("_")[0]
        close = timm.list_models(f"*{stem}*")[:8] if stem else []
        raise CardError(f"unknown timm architecture {name!r}"
                        + (f" (similar: {', '.join(close)})" if close else ""))
    return name


def check_model_kwargs(kwargs, where: str = "model_kwargs") -> dict:
    """``kwargs`` checked against ``MODEL_KWARG_RULES``; CardError names the first bad entry."""
    if not isinstance(kwargs, dict):
        raise CardError(f"{where} must be a JSON object of timm keyword arguments, got {_show(kwargs)}")
    checked = {}
    for key, value in kwargs.items():
        rule = MODEL_KWARG_RULES.get(key)
        if rule is None:
            raise CardError(f"{where}: {_show(key, 40)} is not an allowed timm keyword argument "
                            f"(allowed: {', '.join(sorted(MODEL_KWARG_RULES))}); arguments that "
                            "name files, URLs, caches, devices or pretrained weights never are")
        checked[key] = rule(value, f"{where}.{key}")
    return checked


def check_class_names(names, where: str = "classes") -> list[str]:
    if not isinstance(names, list) or not 1 <= len(names) <= MAX_CLASSES:
        raise CardError(f"{where} must be a list of 1 to {MAX_CLASSES} class names, got "
                        f"{_show(names) if not isinstance(names, list) else f'{len(names)} names'}")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_CLASS_NAME:
            raise CardError(f"{where}[{i}] must be a class name of 1 to {MAX_CLASS_NAME} "
                            f"characters, got {_show(name)}")
        if any(unicodedata.category(ch) == "Cc" for ch in name):
            raise CardError(f"{where}[{i}] {_show(name)} contains control characters")
    if len(set(names)) != len(names):
        raise CardError(f"{where} has duplicate class names")
    return list(names)


def _input_size(value, name):
    if (not isinstance(value, list) or len(value) != 3 or value[0] != 3
            or not all(_is_int(v) and 8 <= v <= MAX_INPUT_SIDE for v in value[1:])):
        raise CardError(f"{name} must be [3, height, width] with sides from 8 to {MAX_INPUT_SIDE}, "
                        f"got {_show(value)}")
    return list(value)


def _channel_values(lo: float, hi: float) -> Rule:
    def check(value, name):
        if (not isinstance(value, list) or len(value) != 3
                or not all(not isinstance(v, bool) and isinstance(v, (int, float))
                           and math.isfinite(v) and lo <= v <= hi for v in value)):
            raise CardError(f"{name} must be 3 numbers (one per RGB channel) from {lo:g} to "
                            f"{hi:g}, got {_show(value)}")
        return [float(v) for v in value]
    return check


def _sha256(value, name):
    if not isinstance(value, str) or (value and not _SHA256.fullmatch(value)):
        raise CardError(f"{name} must be a lowercase hex SHA-256, got {_show(value)}")
    return value


def _version(value, name):
    if not _is_int(value) or value < 1:
        raise CardError(f"{name} must be a positive integer, got {_show(value)}")
    if value > FORMAT_VERSION:
        raise CardError(f"classifier format v{value} is newer than this KubikAI "
                        f"(v{FORMAT_VERSION}); update KubikAI")
    return value


CARD_RULES: dict[str, Rule] = {
    "format": _choice(FORMAT),
    "version": _version,
    "architecture": lambda value, name: check_architecture(value),
    "classes": lambda value, name: check_class_names(value, name),
    "input_size": _input_size,
    "mean": _channel_values(-10.0, 10.0),
    "std": _channel_values(1e-6, 10.0),
    "interpolation": _choice(*INTERPOLATIONS),
    "crop_pct": _float(0.1, 2.0),
    "model_kwargs": lambda value, name: check_model_kwargs(value, name),
    "smart_crop": _bool,
    "classes_sha256": _sha256,
}
REQUIRED = ("format", "architecture", "classes", "input_size", "mean", "std")


def parse_card(text: str | bytes) -> dict:
    """The card's fields, checked against ``CARD_RULES``; CardError (one line) otherwise."""
    try:
        data = bounded_loads(text, max_depth=8, max_bytes=MAX_CARD_BYTES)
    except BoundedJSONError as exc:
        raise CardError(f"model card: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CardError(f"not a KubikAI classifier (missing '{FORMAT}' model card)")
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise CardError(f"model card lacks {', '.join(missing)}")
    unknown = sorted(set(data) - set(CARD_RULES))
    if unknown:
        raise CardError(f"model card has unknown field(s) {_show(unknown)} "
                        f"(known: {', '.join(CARD_RULES)})")
    # The version first: a newer format is reported as such, not as a field error.
    checked = {"version": _version(data.get("version", FORMAT_VERSION), "version")}
    for key, value in data.items():
        if key != "version":
            checked[key] = CARD_RULES[key](value, key)
    return checked
