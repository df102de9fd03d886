"""SDXL LoRA training (``kubik lora train``): captioned pictures in, a kohya-format LoRA out.

  dataset   images + captions (folder or JSONL manifest), aspect-ratio buckets, caption handling
  network   LoRA layers through peft, and their export to kohya's key layout with metadata
  train     the training loop: cached latents and text embeddings, checkpoints, resume
  cli       the ``kubik lora train`` command

The base model is loaded by kubik_core.checkpoints (single-file checkpoints as diffusers
modules, offline).
"""
