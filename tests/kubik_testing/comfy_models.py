"""ComfyUI-shaped MODEL stand-ins built from class names as ComfyUI 0.8.0 has them.

A ComfyUI MODEL is a ModelPatcher whose ``.model`` is a comfy.model_base class (BaseModel ->
SDXL, Flux -> Flux2 ...) holding ``model_config`` (a comfy.supported_models class with a
``unet_config`` dict) and ``model_type`` (an Enum member). We rebuild that shape with classes of
the same names, so detection sees exactly what it would see inside ComfyUI. Used by the
parameter-optimizer tests and the node tests.
"""
from __future__ import annotations

import enum


class ModelType(enum.Enum):  # comfy/model_base.py:66
    EPS = 1
    V_PREDICTION = 2
    V_PREDICTION_EDM = 3
    STABLE_CASCADE = 4
    EDM = 5
    FLOW = 6


def _chain(names: list[str]) -> type:
    """Classes named names[0] (most derived) ... names[-1] (base), each subclassing the next."""
    base = type(names[-1], (), {})
    for name in reversed(names[:-1]):
        base = type(name, (base,), {})
    return base


class ModelPatcher:
    def __init__(self, model):
        self.model = model


def fake_model(model_classes: list[str], config_class: str, unet_config: dict | None = None,
               model_type: str = "EPS") -> ModelPatcher:
    inner = _chain(model_classes)()
    config = type(config_class, (), {})()
    config.unet_config = dict(unet_config or {})
    inner.model_config = config
    inner.model_type = ModelType[model_type]
    return ModelPatcher(inner)
