"""The LoRAs of a generation: ``--loras auto|none|name:strength,...`` -> a LoraStack, applied to
a diffusers pipeline through diffusers/peft (``load_lora_weights`` reads kohya files).

Strengths mean what they mean in ComfyUI's LoraLoader: the weight change ``up @ down *
alpha / rank`` is scaled by ``strength_model`` in the UNet and by ``strength_clip`` in the text
encoders; peft scales its adapters the same way (``set_adapters`` with per-component weights),
so strength 0 leaves the model as it was.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..loras.stack import MAX_STRENGTH, LoraStack, StackItem, check_lora_name

class GenerateLoraError(ValueError):
    """A ``--loras`` value or LoRA file that cannot be used; the message says how to fix it."""


def lora_folders(explicit: list[str] | None) -> list[str]:
    """``--lora-dir`` folders, else $KUBIK_LORAS_DIR (os.pathsep-separated), as the nodes use."""
    if explicit:
        missing = [f for f in explicit if not os.path.isdir(f)]
        if missing:
            raise GenerateLoraError(f"--lora-dir: not a folder: {', '.join(missing)}")
        return list(explicit)
    return [p for p in os.environ.get("KUBIK_LORAS_DIR", "").split(os.pathsep) if p and os.path.isdir(p)]


def find_lora(name: str, folders: list[str]) -> str | None:
    """Full path of ``name`` (with or without .safetensors) inside one of ``folders``; None when
    it is not there or its path leaves the folder."""
    check_lora_name(name)
    for root in folders:
        real_root = os.path.realpath(root)
        for candidate in (name, f"{name}.safetensors"):
            full = os.path.realpath(os.path.join(root, candidate))
            if os.path.commonpath([real_root, full]) == real_root and os.path.isfile(full):
                return full
    return None


def parse_explicit(value: str, folders: list[str]) -> LoraStack:
    """``name:strength[:clip_strength],...`` (strength 1 when left out) -> a stack of found files."""
    items = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, *numbers = (field.strip() for field in part.split(":"))
        try:
            if len(numbers) > 2 or not name:
                raise ValueError(part)
            strength = float(numbers[0]) if numbers else 1.0
            clip = float(numbers[1]) if len(numbers) == 2 else strength
        except ValueError:
            raise GenerateLoraError(f"--loras: {part[:80]!r} is not name:strength (a number, e.g. "
                                    "style.safetensors:0.8)") from None
        for number in (strength, clip):
            if not (-MAX_STRENGTH <= number <= MAX_STRENGTH):
                raise GenerateLoraError(f"--loras: strength {number:g} of {name[:80]!r} is outside "
                                        f"-{MAX_STRENGTH:g}..{MAX_STRENGTH:g}")
        if not folders:
            raise GenerateLoraError("--loras: no LoRA folder; pass --lora-dir DIR or set KUBIK_LORAS_DIR")
        try:
            path = find_lora(name, folders)
        except ValueError as exc:
            raise GenerateLoraError(f"--loras: {exc}") from None
        if path is None:
            raise GenerateLoraError(f"--loras: no LoRA {name[:80]!r} in {', '.join(Path(f).name for f in folders)}; "
                                    "`kubik loras scan DIR` lists them")
        rel = os.path.relpath(path, next(os.path.realpath(f) for f in folders
                                         if os.path.commonpath([os.path.realpath(f), path]) == os.path.realpath(f)))
        items.append(StackItem(name=rel.replace(os.sep, "/"), strength_model=strength, strength_clip=clip,
                               path=path))
    return LoraStack(items=items)


def recommended(analysis, family: str, folders: list[str], priority: str, history=None):
    """The recommender's stack for the prompt (``--loras auto``), paths filled in, and its notes."""
    from ..loras import LoraIndex, recommend, scan_library
    from ..loras.library import default_cache_path

    if not folders:
        return LoraStack(notes=["--loras auto: no LoRA folder (--lora-dir or KUBIK_LORAS_DIR); no LoRA used"])
    library = scan_library(folders, cache_path=default_cache_path())
    rec = recommend(LoraIndex(library), analysis, family=family, priority=priority, history=history)
    stack = rec.stack()
    for item in stack.items:
        if not item.path:
            item.path = find_lora(item.name, folders) or ""
    stack.items = [item for item in stack.items if item.path]
    return stack


def apply_loras(pipe, stack: LoraStack) -> list[str]:
    """Load every LoRA of ``stack`` into ``pipe`` with its strengths; returns the adapter names.

    A file diffusers cannot read as a LoRA of this pipeline is one clear error naming it."""
    from ..common.safetensors_file import SafetensorsFileError, load_tensors

    names, weights = [], []
    # the pipeline's LoRA-loadable parts: unet or transformer (FLUX), and its CLIP text encoders
    modules = [n for n in getattr(pipe, "_lora_loadable_modules", ("unet", "text_encoder", "text_encoder_2"))
               if getattr(pipe, n, None) is not None]
    for number, item in enumerate(stack.items):
        adapter = f"kubik_{number}"
        try:
            tensors = load_tensors(item.path, item.name)
        except SafetensorsFileError as exc:
            raise GenerateLoraError(f"LoRA {item.name}: its tensors cannot be read ({exc.reason})") from None
        try:   # the tensors, not the path: diffusers would look a path up on the hub
            pipe.load_lora_weights(tensors, adapter_name=adapter)
        except (ValueError, KeyError, RuntimeError, OSError, TypeError) as exc:
            raise GenerateLoraError(f"LoRA {item.name}: diffusers cannot apply it to this "
                                    f"checkpoint ({str(exc).splitlines()[0][:160]})") from None
        names.append(adapter)
        weights.append({n: item.strength_clip if n.startswith("text_encoder") else item.strength_model
                        for n in modules})
    if names:
        pipe.set_adapters(names, adapter_weights=weights)
    return names
