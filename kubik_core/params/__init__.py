"""Sampling-parameter optimizer: model family detection, KSampler settings, VRAM/time estimates.

    from kubik_core.params import detect_family, optimize, estimate
    plan = optimize(analysis, family="sdxl", priority="balanced", aspect_ratio="auto")

Modules: families.py (published settings per family, with sources), detect.py (which family a
loaded model is, and what its checkpoint name says), resolution.py (aspect ratio -> native size), optimizer.py (the choices),
bounds.py (the limits on values learned from your edits), estimate.py + devices.py (memory and
time; the CPU measured), checkpoint.py (checkpoint name and safetensors metadata from a ComfyUI
prompt graph), plan.py (result types shared with nodes and the CLI), control.py (ControlNet and
IP-Adapter advice with the makers' published values).
"""
from .detect import FamilyDetection, detect_family
from .devices import DEVICE_CHOICES, DEVICES, DeviceProfile
from .errors import ParamsError
from .estimate import estimate
from .families import FALLBACK_FAMILY, FAMILIES, FAMILY_IDS, FamilyProfile, get_family
from .optimizer import OVERRIDE_FIELDS, optimize
from .plan import MODES, PRIORITIES, Decision, ModelInfo, SamplingPlan
from .resolution import ASPECT_CHOICES

__all__ = [
    "ASPECT_CHOICES", "DEVICE_CHOICES", "DEVICES", "Decision", "DeviceProfile", "FALLBACK_FAMILY",
    "FAMILIES", "FAMILY_IDS", "FamilyDetection", "FamilyProfile", "MODES", "ModelInfo",
    "OVERRIDE_FIELDS", "PRIORITIES", "ParamsError", "SamplingPlan", "detect_family", "estimate",
    "get_family", "optimize",
]
