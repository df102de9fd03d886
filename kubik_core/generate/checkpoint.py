"""A single-file checkpoint as a diffusers text-to-image pipeline, offline.

The parts come from kubik_core.checkpoints (configs read off the file's own tensor shapes, so
nothing downloads); this module checks the family is one ``kubik generate`` runs and assembles
the pipeline around the parts:

- SDXL (and Pony, Illustrious, the SDXL distillations): StableDiffusionXLPipeline with an Euler
  scheduler on SDXL's noise schedule.
- SD1.5 (and SD1.x fine-tunes): StableDiffusionPipeline (a TAESD in the file gives diffusers'
  ``AutoencoderTiny``).

Other families (SD2, SD3.5, FLUX ...) are refused with one line naming the family: their
single-file loaders need configs, tokenizers (T5) or text encoders that are not in the file and
would be downloaded.
"""
from __future__ import annotations

import os

from ..checkpoints import CheckpointError, CheckpointInfo, load_sd15, load_sdxl
from ..checkpoints import inspect_checkpoint as inspect_header
from ..checkpoints import require_family
from ..checkpoints.modules import quiet_libraries

SUPPORTED = ("sd15", "sdxl")

__all__ = ["SUPPORTED", "CheckpointError", "CheckpointInfo", "inspect_checkpoint", "load_pipeline"]


def inspect_checkpoint(path: str | os.PathLike) -> CheckpointInfo:
    """Family and component sizes of ``path`` from its header (no tensor is read); a family
    kubik generate does not run is one clear line."""
    info = inspect_header(path, "--checkpoint")
    require_family(info.family, SUPPORTED, "kubik generate loads SD1.5 and SDXL (incl. Pony and Illustrious) "
                                           "single-file checkpoints offline")
    return info


def load_pipeline(path: str | os.PathLike, tokenizer_dir: str | None = None):
    """(pipeline, CheckpointInfo): a diffusers text-to-image pipeline for ``path``, offline."""
    quiet_libraries()      # the command prints its own progress
    info = inspect_checkpoint(path)
    if info.family == "sdxl":
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
