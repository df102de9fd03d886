"""kubik_core: the KubikAI engine. Pure Python + torch; never imports ComfyUI.

Subpackages, one per capability:
  prompting  prompt parsing (ComfyUI / A1111 weights), dynamic prompts, analysis, Ollama
  params     model-family detection, sampling-parameter optimisation, VRAM/time estimates
  explain    human-readable explanations of the choices made
  loras      LoRA library scan (headers, sidecars, hashes), recommendation, stacks
  learning   ratings store (SQLite WAL / SQLAlchemy), scores, learned edits, PNG metadata
  hub        CivitAI and Hugging Face clients, verified resumable downloads, sidecars
  recon3d    image -> shape -> mesh: mesh/, sdf/, data/, models/ and train/ under one face
  classify   timm image classifiers: data, splits, training, evaluation, prediction, smart crop
  comfy_client  queue workflows on one or many ComfyUI servers over their HTTP API (kubik queue)
  variations    batch variations along seed / parameter / LoRA axes, and their contact sheet
  lora_train    SDXL LoRA training (kubik lora train) with kohya-format output; a child-process runner
  consistency   does a picture still show the character: image embeddings, a calibrated threshold
  characters    character presets (LoRAs, trigger words, prompts, references, threshold) in a registry
  generate      generation outside ComfyUI with diffusers: analysis, LoRAs, plan, memory strategies
and ``common``, the plumbing they share, which imports no capability.

The ``kubik`` command line lives in ``cli.py``, which loads each capability's ``cli.py``;
``demo.py`` is ``kubik demo``, which runs each capability's ``demo.py``. Every module depends
only downwards (tests/test_architecture.py checks the import graph).
"""
__version__ = "0.1.0"
