"""SD1.5 and SDXL LoRA training (``kubik lora train``): captioned pictures in, a kohya-format LoRA out.

  dataset     images + captions (folder or JSONL manifest), aspect-ratio buckets, caption handling
  base_model  the base checkpoint per family (SD1.5, SDXL): its text encoders, conditioning and
              the names the LoRA file records, so the loop is one code path
  network     LoRA layers through peft, and their export to kohya's key layout with metadata
  train       the training loop: cached latents and text embeddings, checkpoints, resume
  cli         the ``kubik lora train`` command

The base model is loaded by kubik_core.checkpoints (single-file checkpoints as diffusers
modules, offline).
"""
