"""Result and input types of the parameter optimizer, shared by nodes, CLI and explainer."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PRIORITIES = ("quality", "balanced", "speed", "low_vram")
MODES = ("AUTO", "ASSISTED", "MANUAL")


@dataclass
class ModelInfo:
    """What can be read off a loaded model without ComfyUI types.

    nodes/comfy_bridge.py fills this from a ComfyUI MODEL (ModelPatcher); tests and the CLI
    build it by hand. Every field is optional: detection uses what is there.
    """

    model_class: str = ""          # type(model.model).__name__, e.g. "SDXL", "Flux", "BaseModel"
    config_class: str = ""         # type(model.model.model_config).__name__, e.g. "SDXL", "FluxSchnell"
    model_class_mro: list[str] = field(default_factory=list)  # base-class names, most derived first
    model_type: str = ""           # "EPS", "V_PREDICTION", "FLOW", ...
    context_dim: int | None = None  # unet_config["context_dim"] where present
    guidance_embed: bool | None = None
    checkpoint_name: str = ""      # file name of the checkpoint, when known
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors __metadata__, when known
    # Scalar entries of unet_config that tell variants of one class apart: "depth" (SD3 vs
    # SD3.5 Large), "x_block_self_attn_layers" (count; SD3.5 Medium), "hidden_size" (FLUX.2
    # dev vs klein), "image_model".
    unet_config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LearnedValue:
    """A value learned from the user's edits, as kubik_core.learning hands it to the optimizer.

    ``value`` already moved at most a bounded step per edit towards ``wanted`` (what the user
    chose: the mean of the edits' final values); the optimizer then keeps it inside the family's
    bounds (bounds.py) and says in the decision's reason that it was learned, from how many edits.
    """

    value: Any
    edits: int = 0              # consistent edits it was learned from (0: unknown)
    wanted: Any = None          # what the user chose, before any bound
    last_edit: float = 0.0      # unix time of the newest of those edits


@dataclass
class Decision:
    """One choice the optimizer made, with its reason and the published source behind it."""

    field: str
    value: Any
    reason: str
    source: str = ""


@dataclass
class SamplingPlan:
    """Sampling parameters ready for ComfyUI's KSampler / EmptyLatentImage, plus estimates."""

    family: str
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    width: int
    height: int
    guidance: float | None = None      # distilled guidance (Flux dev's FluxGuidance); None if unused
    clip_skip: int | None = None       # CLIPSetLastLayer value (e.g. -2), None when not needed
    priority: str = "balanced"
    mode: str = "AUTO"
    estimated_vram_gb: float = 0.0
    estimated_seconds: float | None = 0.0  # None: not estimated (a CPU not measured yet)
    device: str = ""
    family_confidence: float = 1.0
    decisions: list[Decision] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)  # user values that won, field -> value
    suggested: dict[str, Any] = field(default_factory=dict)  # what the optimizer would have chosen
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SamplingPlan":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["decisions"] = [Decision(**d) if isinstance(d, dict) else d for d in known.get("decisions", [])]
        return cls(**known)


def format_seconds(seconds: float) -> str:
    """A duration as people read it: 0.42 s, 12 s, 7 min, 2.5 h."""
    if seconds < 1:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
