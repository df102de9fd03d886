"""PNG text chunks for Kubik Save Image.

* ``prompt`` and every ``extra_pnginfo`` key (``workflow``), JSON-encoded, exactly as ComfyUI's
  SaveImage writes them (ComfyUI nodes.py SaveImage.save_images), so the PNG loads back as a
  workflow.
* ``parameters``: the AUTOMATIC1111 text CivitAI reads to link resources: the prompt with
  ``<lora:name:weight>`` tags, ``Negative prompt:``, then ``Key: value`` pairs incl.
  ``Model hash: <10 hex>`` (the checkpoint's AutoV2) and ``Lora hashes: "name: <12 hex>, ..."``
  (each LoRA's AutoV3, the hash of its tensor data; A1111 extensions-builtin/Lora writes
  ``alias: shorthash`` joined by ", ", and values holding commas are quoted). Where a LoRA's
  AutoV3 is not known, its AutoV2 from the library stands in (CivitAI resolves both).
  model_hashes.py says how the hashes are computed and cached.
* ``kubik``: JSON with the prompt analysis, the sampling plan, the LoRA stack and the
  explanation text.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

# ComfyUI sampler / scheduler ids -> the names A1111 writes (and CivitAI shows).
A1111_SAMPLERS = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a", "lms": "LMS", "dpm_fast": "DPM fast", "dpm_adaptive": "DPM adaptive",
    "dpmpp_2s_ancestral": "DPM++ 2S a", "dpmpp_sde": "DPM++ SDE", "dpmpp_sde_gpu": "DPM++ SDE",
    "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_2m_sde_gpu": "DPM++ 2M SDE",
    "dpmpp_3m_sde": "DPM++ 3M SDE", "dpmpp_3m_sde_gpu": "DPM++ 3M SDE", "ddim": "DDIM",
    "uni_pc": "UniPC", "lcm": "LCM", "restart": "Restart", "heunpp2": "Heun++ 2",
}
A1111_SCHEDULERS = {
    "karras": "Karras", "exponential": "Exponential", "sgm_uniform": "SGM Uniform",
    "simple": "Simple", "normal": "Normal", "ddim_uniform": "DDIM", "beta": "Beta",
    "kl_optimal": "KL Optimal", "linear_quadratic": "Linear Quadratic",
}


def _quote(value: str) -> str:
    """A1111's generation_parameters_copypaste.quote: JSON-quote values with , : or quotes."""
    if "," not in value and "\n" not in value and ":" not in value and '"' not in value:
        return value
    return json.dumps(value, ensure_ascii=False)


def _safe_name(name: str) -> str:
    return name.replace(":", "").replace(",", "")


def a1111_parameters(positive: str, negative: str = "", plan: Any = None, seed: int | None = None,
                     model_name: str = "", loras: Sequence[Mapping[str, Any]] = (),
                     version: str = "", model_hash: str = "") -> str:
    """The ``parameters`` text. ``loras``: dicts with name, strength_model and autov3 or autov2;
    ``model_hash``: the checkpoint's A1111 short hash (first 10 hex of its SHA-256)."""
    prompt = positive.strip()
    tags = []
    hashes = []
    for lora in loras:
        stem = _safe_name(str(lora["name"]).replace("\\", "/").split("/")[-1].rpartition(".")[0]
                          or str(lora["name"]))
        tags.append(f"<lora:{stem}:{float(lora.get('strength_model', 1.0)):g}>")
        short_hash = lora.get("autov3") or lora.get("autov2")
        if short_hash:
            hashes.append(f"{stem}: {short_hash}")
    if tags:
        prompt = (prompt + " " + " ".join(tags)).strip()
    lines = [prompt]
    if negative.strip():
        lines.append(f"Negative prompt: {negative.strip()}")
    pairs: list[tuple[str, Any]] = []
    get = (plan.get if isinstance(plan, Mapping) else lambda k, d=None: getattr(plan, k, d)) if plan is not None \
        else (lambda k, d=None: d)
    if get("steps"):
        pairs.append(("Steps", get("steps")))
    if get("sampler_name"):
        pairs.append(("Sampler", A1111_SAMPLERS.get(get("sampler_name"), get("sampler_name"))))
    if get("scheduler"):
        pairs.append(("Schedule type", A1111_SCHEDULERS.get(get("scheduler"), get("scheduler"))))
    if get("cfg") is not None:
        pairs.append(("CFG scale", f"{float(get('cfg')):g}"))
    if seed is not None:
        pairs.append(("Seed", seed))
    if get("width") and get("height"):
        pairs.append(("Size", f"{get('width')}x{get('height')}"))
    if get("guidance") is not None:
        pairs.append(("Distilled CFG Scale", f"{float(get('guidance')):g}"))
    if get("clip_skip"):
        pairs.append(("Clip skip", abs(int(get("clip_skip")))))
    if model_hash:
        pairs.append(("Model hash", model_hash))
    if model_name:
        pairs.append(("Model", model_name.replace("\\", "/").split("/")[-1].rpartition(".")[0] or model_name))
    if hashes:
        pairs.append(("Lora hashes", ", ".join(hashes)))
    if version:
        pairs.append(("Version", version))
    if pairs:
        lines.append(", ".join(f"{k}: {_quote(str(v))}" for k, v in pairs))
    return "\n".join(lines)


def png_text_chunks(prompt_graph: Any, extra_pnginfo: Mapping[str, Any] | None, parameters: str,
                    kubik: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, text) pairs in the order they are written."""
    chunks: list[tuple[str, str]] = []
    if prompt_graph is not None:
        chunks.append(("prompt", json.dumps(prompt_graph)))
    for key, value in (extra_pnginfo or {}).items():
        chunks.append((key, json.dumps(value)))
    chunks.append(("parameters", parameters))
    chunks.append(("kubik", json.dumps(kubik, default=str)))
    return chunks


# Core samplers and the input holding their seed.
_SAMPLER_SEEDS = {"KSampler": "seed", "KSamplerAdvanced": "noise_seed", "SamplerCustom": "noise_seed",
                  "RandomNoise": "noise_seed"}


def graph_seed_and_model(prompt_graph: Any) -> tuple[int | None, str]:
    """(seed, checkpoint file name) read from ComfyUI's API-format prompt when the graph has one
    sampler with a literal seed; (None, "") when it is ambiguous or absent."""
    from ..params.checkpoint import find_checkpoint

    if not isinstance(prompt_graph, Mapping):
        return None, ""
    found = []
    for node_id, node in prompt_graph.items():
        if not isinstance(node, Mapping) or node.get("class_type") not in _SAMPLER_SEEDS:
            continue
        value = (node.get("inputs") or {}).get(_SAMPLER_SEEDS[node["class_type"]])
        if isinstance(value, int) and not isinstance(value, bool):
            found.append((node_id, value))
    if len(found) != 1:
        return None, ""
    node_id, seed = found[0]
    ref = find_checkpoint(prompt_graph, node_id, "model")
    return seed, ref.name if ref is not None else ""
