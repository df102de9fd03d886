"""SDXL LoRA training (``kubik lora train``): captioned pictures in, a kohya-format LoRA out.

  dataset   images + captions (folder or JSONL manifest), aspect-ratio buckets, caption handling
  model     a single-file SDXL checkpoint loaded into diffusers' UNet, VAE and text encoders,
            offline (configs are built from the file's own tensor shapes)
  network   LoRA layers through peft, and their export to kohya's key layout with metadata
  train     the training loop: cached latents and text embeddings, checkpoints, resume
  cli       the ``kubik lora train`` command
"""
