"""Generation outside ComfyUI: ``kubik generate`` with diffusers, the pack's analysis, LoRA picks
and sampling settings, memory strategies for small GPUs, and the learning store.

    from kubik_core.generate import GenerateRequest, plan_generation, generate
    prepared = plan_generation(GenerateRequest("a castle at dawn", checkpoint="model.safetensors"))
    result = generate(prepared)

Modules: checkpoint.py (single-file SD1.5 / SDXL checkpoints as diffusers pipelines, offline),
schedulers.py (ComfyUI sampler/scheduler names -> diffusers schedulers, with the mismatches),
memory.py (none / balanced / sequential / aggressive, estimates, ``auto``), loras.py (``--loras``
and peft adapters with ComfyUI's strengths), controlnet.py (SD1.5 and SDXL ControlNet single
files, offline), ip_adapter.py (IP-Adapters and their CLIP vision encoders, checked from the
headers), prompt_weights.py ((word:1.2) as ComfyUI weighs it), run.py (one run: plan, load,
generate, save, record), cli.py (``kubik generate``).
"""
from .run import GenerateError, GenerateRequest, GenerateResult, PreparedGeneration, generate, plan_generation

__all__ = ["GenerateError", "GenerateRequest", "GenerateResult", "PreparedGeneration", "generate",
           "plan_generation"]
