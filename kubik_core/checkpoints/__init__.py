"""Single-file Stable Diffusion checkpoints (A1111 / kohya / ComfyUI layout) as diffusers modules,
offline: the one loader under ``kubik generate`` and ``kubik lora train``.

diffusers' ``from_single_file`` wants the diffusers configs of a model, which it would fetch
from the Hugging Face hub; here they are read off the file's own tensor shapes, so nothing
downloads, and the tiny checkpoints the tests build load like real ones.

  layout     key prefixes of the original layout, the header's shapes, UNet name mapping
  detect     the family of a file (SD1.5, SDXL, or the one it holds instead) and its part sizes
  tokenizer  CLIP's tokenizer files from --tokenizer or a local ComfyUI
  modules    filling modules strictly, quiet library loading
  vae        the KL autoencoder or a TAESD
  sd15       SD1.x checkpoints -> SD15Model (UNet, CLIP-L, VAE, scheduler)
  sdxl       SDXL / Pony / Illustrious checkpoints -> SDXLModel (UNet, CLIP-L, bigG, VAE, scheduler)
  parts      a model spread over ComfyUI's files: parts found by header marks, CLIP / T5 text
             encoders, T5's tokenizer, the 16-channel VAE
  flux       FLUX.1 dev / schnell -> diffusers FluxPipeline (diffusion model + text encoders + ae)
  sd3        SD3 / SD3.5 -> diffusers StableDiffusion3Pipeline (MMDiT + CLIP-L/G [+ T5] + VAE)
"""
from .detect import FAMILY_NAMES, CheckpointInfo, detect_family, inspect_checkpoint, require_family
from .layout import CheckpointError, read_shapes
from .sd15 import SD15Model, load_sd15
from .sdxl import SDXLModel, load_sdxl
from .tokenizer import find_tokenizer

__all__ = ["FAMILY_NAMES", "CheckpointError", "CheckpointInfo", "SD15Model", "SDXLModel", "detect_family",
           "find_tokenizer", "inspect_checkpoint", "load_sd15", "load_sdxl", "read_shapes", "require_family"]
