"""Memory strategies for diffusers pipelines, their estimates, and ``auto``.

=========== ============================================================ ===================
strategy    what it does (diffusers)                                     needs
=========== ============================================================ ===================
none        every component on the device                                 -
balanced    ``enable_model_cpu_offload``: one component at a time on the  a CUDA GPU
            GPU (text encoders, then UNet, then VAE)
sequential  ``enable_sequential_cpu_offload``: each layer moved in when   a CUDA GPU
            it runs ("extremely slow", diffusers' docs)
aggressive  group offloading at leaf level (CUDA streams overlap the      runs on the CPU too
            copies on a GPU), VAE tiling and slicing, fp8 (e4m3) storage  (group offloading
            with fp16/bf16 compute for the UNet or the FLUX/SD3 DiT on a  onto the CPU, tiling)
            GPU (layerwise casting)
=========== ============================================================ ===================

The estimate is a documented model, not a measurement:

- weights: parameter bytes per component as loaded (float32 on the CPU, float16 on a GPU; FLUX
  and SD3 bfloat16), from the headers of the checkpoint (and of FLUX's or SD3's separate text
  encoder and VAE files) (checkpoint.inspect_checkpoint), and of the ControlNet, IP-Adapter and
  image encoder files, each a component of its own;
- activations: the UNet's at the latent size, ``ACTIVATION_BYTES_PER_LATENT_PIXEL`` bytes per
  latent pixel and image (x2 for classifier-free guidance), plus the VAE decoder's at the image
  size, ``VAE_BYTES_PER_PIXEL`` bytes per output pixel (a tile's worth with tiling);
- peak per strategy: none = all weights + activations; balanced = the largest component +
  activations; sequential = the largest layer + activations; aggressive = a few of the largest
  layers (fp8 on a GPU halves the UNet's share) + activations with a tiled VAE;
- time: the optimizer's own estimate for the device (params/estimate.py) for ``none``, times
  ``TIME_FACTORS`` for the others: rough guesses, not measured here yet (diffusers publishes
  leaf-level group offloading of the FLUX transformer at 3.8x its time without streams, and calls
  sequential offloading "extremely slow"; streams hide most of the copies). The GPU run of
  benchmarks/generate.py is what will check them. A ControlNet adds its parameter share of the
  denoiser's time to each step, true CFG (FLUX IP-Adapters) doubles it.

``auto`` picks the first strategy of ``AUTO_ORDER`` (fastest first) whose estimated peak fits
``FIT_FRACTION`` of the free memory ``torch.cuda.mem_get_info`` reports; on a machine without a
CUDA GPU it picks ``none`` (nothing to offload to).
"""
from __future__ import annotations

from dataclasses import dataclass, field

STRATEGIES = ("none", "balanced", "sequential", "aggressive")
MEMORY_CHOICES = ("auto", *STRATEGIES)
GPU_ONLY = ("balanced", "sequential")
AUTO_ORDER = ("none", "balanced", "aggressive", "sequential")
FIT_FRACTION = 0.9
# Rough activation sizes (order of magnitude of the largest feature maps and attention buffers of
# one UNet forward pass with PyTorch SDPA attention, and of the VAE decoder); a model to be checked
# against the GPU benchmark, not a measurement.
ACTIVATION_BYTES_PER_LATENT_PIXEL = 160 * 1024
VAE_BYTES_PER_PIXEL = 3 * 1024
VAE_TILE_PIXELS = 512 * 512
TIME_FACTORS = {"none": 1.0, "balanced": 1.15, "sequential": 8.0, "aggressive": 1.8}


class MemoryStrategyError(ValueError):
    """A strategy that cannot run here; the message says why and what to choose instead."""


@dataclass
class StrategyEstimate:
    strategy: str
    peak_bytes: int
    seconds: float | None
    runs_here: bool
    note: str = ""

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "peak_gb": round(self.peak_bytes / 2**30, 3),
                "seconds": None if self.seconds is None else round(self.seconds, 2),
                "runs_here": self.runs_here, "note": self.note}


@dataclass
class MemoryChoice:
    strategy: str
    reason: str
    estimates: list[StrategyEstimate] = field(default_factory=list)


def estimate_strategies(component_bytes: dict, largest_layer_bytes: int, width: int, height: int,
                        batch: int, cuda: bool, base_seconds: float | None,
                        step_cost: float = 1.0) -> list[StrategyEstimate]:
    """Peak memory and time of each strategy (see the module docstring for the model);
    ``step_cost``: a step's time against the checkpoint's alone (a ControlNet, true CFG)."""
    latent_pixels = (width // 8) * (height // 8)
    unet_acts = 2 * batch * latent_pixels * ACTIVATION_BYTES_PER_LATENT_PIXEL
    vae_acts = batch * width * height * VAE_BYTES_PER_PIXEL
    tiled_vae_acts = min(width * height, VAE_TILE_PIXELS) * VAE_BYTES_PER_PIXEL
    activations = max(unet_acts, vae_acts)
    weights = sum(component_bytes.values())
    peaks = {
        "none": weights + activations,
        "balanced": max(component_bytes.values()) + activations,
        "sequential": largest_layer_bytes + activations,
        "aggressive": 4 * largest_layer_bytes * (0.5 if cuda else 1) + max(unet_acts, tiled_vae_acts),
    }
    estimates = []
    for name in STRATEGIES:
        runs = cuda or name not in GPU_ONLY
        note = "" if runs else "needs a CUDA GPU (offloading moves weights between the CPU and the GPU)"
        if name == "aggressive" and not cuda:
            note = "on the CPU: group offloading onto the CPU and VAE tiling/slicing; no fp8 casting"
        seconds = None if base_seconds is None else base_seconds * step_cost * TIME_FACTORS[name]
        estimates.append(StrategyEstimate(name, int(peaks[name]), seconds, runs, note))
    return estimates


def choose(requested: str, estimates: list[StrategyEstimate], cuda: bool,
           free_bytes: int | None) -> MemoryChoice:
    """The strategy to run and why; raises MemoryStrategyError for one that cannot run here."""
    by_name = {e.strategy: e for e in estimates}
    if requested != "auto":
        if requested not in by_name:
            raise MemoryStrategyError(f"--memory: unknown strategy {requested!r}; choose one of "
                                      f"{', '.join(MEMORY_CHOICES)}")
        if not by_name[requested].runs_here:
            raise MemoryStrategyError(f"--memory {requested} needs a CUDA GPU (it offloads weights from "
                                      "the GPU to the CPU); on this machine use none or aggressive, or auto")
        return MemoryChoice(requested, "asked for with --memory", estimates)
    if not cuda:
        return MemoryChoice("none", "auto: no CUDA GPU here, everything runs on the CPU (nothing to offload to)",
                            estimates)
    budget = int((free_bytes or 0) * FIT_FRACTION)
    for name in AUTO_ORDER:
        if by_name[name].peak_bytes <= budget:
            return MemoryChoice(name, f"auto: {name} is the fastest strategy whose estimated peak "
                                      f"{by_name[name].peak_bytes / 2**30:.1f} GB fits {FIT_FRACTION:.0%} of the "
                                      f"{(free_bytes or 0) / 2**30:.1f} GB free", estimates)
    return MemoryChoice("sequential", f"auto: no strategy's estimate fits the {(free_bytes or 0) / 2**30:.1f} GB "
                                      "free; sequential needs the least", estimates)


def apply_strategy(pipe, strategy: str, device) -> list[str]:
    """Set ``pipe`` up for ``strategy`` on ``device`` (a torch.device); returns notes on what was
    done. GPU-only strategies are refused by ``choose`` before this is called."""
    import torch

    notes: list[str] = []
    cuda = device.type == "cuda"
    if strategy == "none":
        pipe.to(device)
    elif strategy == "balanced":
        pipe.enable_model_cpu_offload(device=device)
    elif strategy == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    elif strategy == "aggressive":
        for name in ("text_encoder", "text_encoder_2", "text_encoder_3", "image_encoder", "unet", "transformer",
                     "controlnet"):
            module = getattr(pipe, name, None)
            if module is None:
                continue
            if name in ("unet", "transformer") and cuda and hasattr(module, "enable_layerwise_casting"):
                compute = module.dtype          # the pipeline's (float16 or bfloat16 on a GPU): inputs match
                module.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute)
                notes.append(f"{'UNet' if name == 'unet' else 'transformer'} weights stored in fp8 (e4m3), "
                             f"computed in {str(compute).replace('torch.', '')}")
            _group_offload(module, device, cuda)
        pipe.vae.to(device)
        pipe.vae.enable_tiling()
        pipe.vae.enable_slicing()
        notes.append("group offloading at leaf level" + (" with CUDA streams" if cuda else " onto the CPU")
                     + "; VAE tiling and slicing")
        if not cuda:
            notes.append("fp8 layerwise casting skipped on the CPU (it would change the picture and save no time)")
    else:
        raise MemoryStrategyError(f"--memory: unknown strategy {strategy!r}")
    return notes


def _group_offload(module, device, cuda: bool) -> None:
    """diffusers' group offloading for a diffusers model; transformers' text encoders through
    the same hook function (it works on any torch module)."""
    import torch

    try:
        from diffusers.hooks import apply_group_offloading
    except ImportError:       # requirements.txt allows diffusers 0.31 for training
        raise MemoryStrategyError("--memory aggressive needs diffusers 0.33 or newer (group offloading); "
                                  "upgrade diffusers or choose none") from None
    apply_group_offloading(module, onload_device=device, offload_device=torch.device("cpu"),
                           offload_type="leaf_level", use_stream=cuda)


def measure_start(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def measured_peak(device) -> tuple[int, str]:
    """(bytes, what was measured) after a run."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "torch.cuda.max_memory_allocated"
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024
    return int(rss * scale), "peak RSS of this process (loading included), on the CPU"
