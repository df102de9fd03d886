"""Peak memory and time per image for a sampling plan on a device profile.

The model, and what it leaves out:

* Weights: the diffusion model's parameter count (model card) x bytes per value: 2 (fp16/bf16)
  on GPUs, 1 with the low_vram priority for families that ship fp8 checkpoints, 4 on the CPU.
* Activations while sampling: ComfyUI's own estimate, comfy/model_base.py:379
  (memory_required): batch x latent height x latent width x dtype bytes x 0.01 x the family's
  memory_usage_factor, in MiB. The batch is 2 when CFG > 1 (conditional + unconditional pass).
* VAE decode: ComfyUI's KL-VAE reservation, comfy/sd.py:320 (2178 x latent h x w x 64 x dtype
  bytes, latent at 1/8 of the image). ComfyUI frees the diffusion model when decode needs it.
* Text encoding happens before sampling with its own weights resident.
* Peak = the largest of the three phases + 0.4 GB CUDA context on GPUs (assumption).
* Time = steps x passes x 2 x parameters x tokens / (device TFLOPS x efficiency), where tokens =
  pixels / the family's pixels_per_token (256 for x8 VAE + patch-2 transformers; 768 for
  UNets, an effective figure that puts SDXL at ~7 TFLOP per 1024^2 evaluation). Attention's
  quadratic term, text encoding, VAE decode and model loading are not counted.

These are planning figures (within a factor of ~2), not measurements.
"""
from __future__ import annotations

from .devices import DeviceProfile, resolve_device
from .families import FamilyProfile, get_family
from .plan import SamplingPlan

_GIB = float(2**30)
_MIB = float(2**20)
_CUDA_CONTEXT_GB = 0.4


def estimate_for(family: FamilyProfile, device: DeviceProfile, width: int, height: int,
                 steps: int, cfg: float, priority: str = "balanced") -> tuple[float, float]:
    """(peak memory in GB, seconds per image); see the module docstring for the model."""
    dtype = device.dtype_bytes
    weight_bytes = 1 if (priority == "low_vram" and family.fp8_release and dtype == 2) else dtype
    passes = 2 if cfg > 1.0 else 1
    latent_area = (width / family.latent_scale) * (height / family.latent_scale)
    activations = passes * latent_area * dtype * 0.01 * family.memory_usage_factor * _MIB
    model = family.params_b * 1e9 * weight_bytes
    vae = family.vae_b * 1e9 * dtype
    decode = 2178.0 * (width / 8) * (height / 8) * 64 * dtype
    text = family.text_encoder_b * 1e9 * weight_bytes
    peak = max(model + vae + activations, vae + decode, text)
    context = _CUDA_CONTEXT_GB if device.id != "cpu" else 0.0
    vram_gb = peak / _GIB + context
    tokens = width * height / family.pixels_per_token
    flops = steps * passes * 2.0 * family.params_b * 1e9 * tokens
    seconds = flops / (device.tflops * 1e12 * device.efficiency)
    return round(vram_gb, 2), round(seconds, 2)


def estimate(plan: SamplingPlan, device: str = "auto") -> tuple[float, float]:
    """(peak VRAM in GB, seconds per image) for ``plan`` on a device id of devices.DEVICES."""
    profile, _note = resolve_device(device)
    return estimate_for(get_family(plan.family), profile, plan.width, plan.height, plan.steps,
                        plan.cfg, plan.priority)
