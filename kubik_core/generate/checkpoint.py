"""A single-file checkpoint as a diffusers text-to-image pipeline, offline.

The parts come from kubik_core.checkpoints (configs read off the file's own tensor shapes, so
nothing downloads); this module checks the family is one ``kubik generate`` runs and assembles
the pipeline around the parts:

- SDXL (and Pony, Illustrious, the SDXL distillations): StableDiffusionXLPipeline with an Euler
  scheduler on SDXL's noise schedule.
- SD1.5 (and SD1.x fine-tunes): StableDiffusionPipeline (a TAESD in the file gives diffusers'
  ``AutoencoderTiny``).
- FLUX.1 dev and schnell: FluxPipeline from a diffusion-model file with ``--text-encoders`` and
  ``--vae``, or from an all-in-one checkpoint (checkpoints/flux.py).
- SD3 and SD3.5 (Large, Turbo, Medium): StableDiffusion3Pipeline from a checkpoint with
  ``--text-encoders``, or an all-in-one file (checkpoints/sd3.py).

Other families (SD2, FLUX.2 ...) are refused with one line naming the family.
"""
from __future__ import annotations

import os

from ..checkpoints import CheckpointError, CheckpointInfo, load_sd15, load_sdxl
from ..checkpoints import inspect_checkpoint as inspect_header
from ..checkpoints import FAMILY_NAMES, require_family
from ..checkpoints.flux import inspect_flux, load_flux
from ..checkpoints.sd3 import inspect_sd3, load_sd3
from ..checkpoints.modules import quiet_libraries

SUPPORTED = ("sd15", "sdxl", "flux", "sd3")

__all__ = ["SUPPORTED", "CheckpointError", "CheckpointInfo", "inspect_checkpoint", "load_pipeline"]


def inspect_checkpoint(path: str | os.PathLike, text_encoders: list | tuple = (),
                       vae: str | None = None) -> CheckpointInfo:
    """Family and component sizes of ``path`` from its header (no tensor is read); a family
    kubik generate does not run is one clear line. ``text_encoders`` and ``vae``: the separate
    files a FLUX diffusion model needs (checkpoints.flux.resolve_flux_files)."""
    info = inspect_header(path, "--checkpoint")
    require_family(info.family, SUPPORTED, "kubik generate loads SD1.5, SDXL (incl. Pony and Illustrious), "
                                           "SD3/SD3.5 and FLUX.1 (dev, schnell) models offline")
    if info.family == "flux":
        return inspect_flux(path, text_encoders, vae)
    if info.family == "sd3":
        return inspect_sd3(path, text_encoders, vae)
    if text_encoders or vae is not None:
        raise CheckpointError(f"--text-encoders and --vae go with FLUX and SD3.5 models; {os.path.basename(path)} "
                              f"is an {FAMILY_NAMES[info.family]} checkpoint that holds its own")
    return info


def load_pipeline(path: str | os.PathLike, tokenizer_dir: str | None = None, text_encoders: list | tuple = (),
                  vae: str | None = None, t5_tokenizer_dir: str | None = None, flow_dtype=None):
    """(pipeline, CheckpointInfo): a diffusers text-to-image pipeline for ``path``, offline.
    ``flow_dtype``: the dtype FLUX and SD3 weights are read in (default float32)."""
    quiet_libraries()      # the command prints its own progress
    info = inspect_checkpoint(path, text_encoders, vae)
    if info.family == "flux":
        pipe = load_flux(info.files, tokenizer_dir, t5_tokenizer_dir, flow_dtype)
    elif info.family == "sd3":
        pipe = load_sd3(info.files, tokenizer_dir, t5_tokenizer_dir, flow_dtype)
    elif info.family == "sdxl":
        from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

        from ..checkpoints.sdxl import SDXL_SCHEDULER

        parts = load_sdxl(path, tokenizer_dir)
        scheduler = EulerDiscreteScheduler(**{k: v for k, v in SDXL_SCHEDULER.items() if k != "clip_sample"},
                                           prediction_type=parts.prediction_type)
        pipe = StableDiffusionXLPipeline(vae=parts.vae, text_encoder=parts.text_encoder,
                                         text_encoder_2=parts.text_encoder_2, tokenizer=parts.tokenizer,
                                         tokenizer_2=parts.tokenizer_2, unet=parts.unet, scheduler=scheduler)
    else:
        from diffusers import StableDiffusionPipeline

        parts = load_sd15(path, tokenizer_dir)
        pipe = StableDiffusionPipeline(vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer,
                                       unet=parts.unet, scheduler=parts.scheduler, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe, info
