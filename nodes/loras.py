"""LoRA nodes: Kubik LoRA Recommender, Kubik Apply LoRA Stack, Kubik LoRA Stack, and Kubik
Embedding Recommender (textual-inversion embeddings of ComfyUI's ``embeddings`` folders).

Thin wrappers over kubik_core.loras. The library is every ComfyUI ``loras`` folder, scanned with
an index cached under <user directory>/kubik/ (an unchanged library is not read again); hashes
are computed in a background thread (kubik_core.loras.service). LoRAs are applied by ComfyUI itself
(comfy.sd.load_lora_for_models, through comfy_bridge).
"""
from __future__ import annotations

from pathlib import Path

from . import comfy_bridge as bridge
from ..kubik_core.loras import (DEFAULT_WEIGHTS, NSFW_LEVELS, PRIORITIES, LoraStack, StackItem,
                                default_cache_path, rebalance, recommend)
from ..kubik_core.loras.entry import SAFETENSORS_EXTENSIONS
from ..kubik_core.common.safetensors_file import SafetensorsFileError, read_header
from ..kubik_core.loras.errors import LoraStackError
from ..kubik_core.loras.service import EmbeddingCache, LibraryService
from ..kubik_core.loras.stack import check_lora_name, check_strength, stack_from_input
from ..kubik_core.params import FAMILY_IDS, detect_family

_LIBRARY = LibraryService()      # one scan per change and one hashing thread per server
_EMBEDDINGS = EmbeddingCache()    # CLIP vectors of LoRA texts, kept across runs


def _library():
    """Scan ComfyUI's loras folders (cached index) and return (library, index)."""
    folders = bridge.lora_folders()
    if not folders:
        raise ValueError("no LoRA folder: ComfyUI has no 'loras' folder configured (outside ComfyUI "
                         "set KUBIK_LORAS_DIR)")
    user_dir = bridge.kubik_user_directory()
    cache = Path(user_dir) / "lora_index.json" if user_dir else default_cache_path()
    return _LIBRARY.library(folders, cache)


def _model_info(model, prompt, unique_id):
    """(ModelInfo of the MODEL, notes): the checkpoint's name and metadata when the graph names
    the file (Pony / Illustrious load as SDXL: only the name or metadata tells them apart). A
    checkpoint whose header cannot be read is detected from its name, with a note naming it
    relative to its model folder."""
    from ..kubik_core.params.checkpoint import find_checkpoint, read_safetensors_metadata
    from ..kubik_core.params.errors import CheckpointFileError

    info = bridge.describe_model_for_params(model)
    ref = find_checkpoint(prompt, unique_id)
    if ref is None:
        return info, []
    info.checkpoint_name = ref.name
    path = bridge.model_file_path(ref.folder, ref.name)
    if path is None:
        return info, []
    try:
        info.metadata = read_safetensors_metadata(path, name=ref.name)
    except CheckpointFileError as exc:
        return info, [f"model: could not read the metadata of checkpoint {exc.file} ({exc.reason}); "
                      "the family is detected from its name only"]
    return info, []


def _cached_embedder(clip):
    """The CLIP's pooled-embedding function, remembering LoRA texts across runs (same CLIP object)."""
    embed = bridge.clip_pooled_embedder(clip)
    return _EMBEDDINGS.wrap(id(clip), embed) if embed is not None else None


def _history():
    """The history factor per LoRA from the store ({} without one; a broken store is an error)."""
    from ..kubik_core.learning import LearningError, lora_history_scores
    from ..kubik_core.learning.location import existing_store

    try:
        store = existing_store(bridge.kubik_user_directory(create=False))
        return lora_history_scores(store) if store is not None else {}
    except LearningError as exc:
        raise ValueError(f"weight_history: the learning store cannot be read ({exc}); set "
                         "weight_history to 0 to recommend without it") from exc


class KubikLoraRecommender:
    CATEGORY = "KubikAI/loras"
    FUNCTION = "recommend"
    DESCRIPTION = ("Picks the LoRAs of your library that the prompt asks for: by name, trigger word, "
                   "medium or a request for detail, never a character the prompt does not name, and no "
                   "more than the evidence supports (no padding). Among those it ranks by text "
                   "similarity (the connected CLIP, else BM25), CivitAI popularity and your own ratings. "
                   "Drops LoRAs for another base model or SDXL variant, blocked or mature content, speed "
                   "LoRAs and clashing styles, saying why in reasons; sets strengths from usage tips or "
                   "the evidence. Given a stack (e.g. Kubik Character's), keeps it and adds no other "
                   "character to it.")
    RETURN_TYPES = ("KUBIK_LORA_STACK", "STRING", "STRING")
    RETURN_NAMES = ("lora_stack", "trigger_words", "reasons")
    OUTPUT_TOOLTIPS = (
        "The chosen LoRAs with strengths: link to Kubik Apply LoRA Stack (and Kubik Save Image).",
        "Trigger words of the chosen LoRAs, comma-separated (add them to your prompt).",
        "Why each LoRA was picked (its kind and what in the prompt asked for it), and why the others "
        "with some evidence were left out.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        weight = lambda default, what: ("FLOAT", {"default": default, "min": 0.0, "max": 1.0, "step": 0.05,
                                                  "tooltip": f"Weight of {what} in the score (weights are normalised)."})
        return {
            "required": {
                "analysis": ("KUBIK_PROMPT_ANALYSIS", {"tooltip": "Output of Kubik Prompt Analyzer."}),
                "max_loras": ("INT", {"default": 3, "min": 0, "max": 8, "tooltip":
                              "Most LoRAs to stack (the priority may lower it)."}),
                "priority": (list(PRIORITIES), {"default": "balanced", "tooltip":
                             "quality: up to 6 LoRAs; balanced: up to 4; speed and low_vram: up to 2."}),
                "family": (["auto", *FAMILY_IDS], {"default": "auto", "tooltip":
                           "Model family for the compatibility filter; 'auto' detects it from the "
                           "connected MODEL (no filter without one)."}),
                "content": (list(NSFW_LEVELS), {"default": "safe", "tooltip":
                            "Highest CivitAI content level allowed: safe (PG-13), mature (R), everything."}),
                "blocklist": ("STRING", {"default": "", "multiline": False, "tooltip":
                              "Comma-separated names, tags or globs (e.g. 'nsfw, *_old*') never to pick."}),
                "weight_semantic": weight(DEFAULT_WEIGHTS["semantic"], "text similarity"),
                "weight_keyword": weight(DEFAULT_WEIGHTS["keyword"], "the prompt's concepts found in the LoRA"),
                "weight_popularity": weight(DEFAULT_WEIGHTS["popularity"], "CivitAI popularity"),
                "weight_history": weight(DEFAULT_WEIGHTS["history"], "your ratings (Kubik Feedback)"),
            },
            "optional": {
                "model": ("MODEL", {"tooltip": "The loaded model: its family filters out LoRAs made for another."}),
                "clip": ("CLIP", {"tooltip": "The loaded CLIP: its pooled embeddings measure similarity "
                                            "(slower than the built-in text index; first 64 candidates)."}),
                "allow_other_variants": ("BOOLEAN", {"default": False, "tooltip":
                                         "Also pick LoRAs made for another SDXL variant (a Pony LoRA on plain "
                                         "SDXL, an SDXL LoRA on Pony or Illustrious), at a lower score. Off: "
                                         "they are filtered out, since they load but transfer poorly."}),
                "lora_stack": ("KUBIK_LORA_STACK", {"tooltip":
                               "A stack to keep as it is, e.g. Kubik Character's: its LoRAs come first and "
                               "count towards max_loras; the recommender only adds others, and never another "
                               "character when the stack is a character's."}),
            },
            "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def IS_CHANGED(cls, **_inputs):
        """Re-run when the library or the ratings changed (ComfyUI caches the output otherwise)."""
        from ..kubik_core.learning.location import feedback_count

        try:
            library, _index = _library()
        except ValueError:
            return float("nan")   # no library: always re-run, so the node reports it
        ratings = feedback_count(bridge.kubik_user_directory(create=False))
        return f"{len(library.signatures)}:{hash(str(sorted(library.signatures.items())))}:{ratings}"

    def recommend(self, analysis, max_loras, priority, family, content, blocklist, weight_semantic,
                  weight_keyword, weight_popularity, weight_history, model=None, clip=None,
                  allow_other_variants=False, lora_stack=None, prompt=None, unique_id=None):
        if analysis is None:
            raise ValueError("analysis: connect the analysis output of Kubik Prompt Analyzer")
        weights = {"semantic": weight_semantic, "keyword": weight_keyword,
                   "popularity": weight_popularity, "history": weight_history}
        for key, value in weights.items():  # ComfyUI's min/max check lets NaN through
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"weight_{key}: should be a number from 0 to 1, got {value!r:.40}")
        if sum(weights.values()) <= 0:
            raise ValueError("weight_*: at least one weight must be above 0")
        if not isinstance(allow_other_variants, bool):
            raise ValueError(f"allow_other_variants: should be true or false, got {allow_other_variants!r:.40}")
        base = stack_from_input(lora_stack, "lora_stack") if lora_stack is not None else None
        family_id, notes = None, []
        if family != "auto":
            family_id = family
        elif model is not None:
            info, notes = _model_info(model, prompt, unique_id)
            family_id = detect_family(info, "auto").family
        library, index = _library()
        missing = bridge.missing_model_folder("loras")
        if missing and not library.entries:   # the graph still runs (no LoRA); the explanation says why
            notes = [f"no LoRA to recommend: {missing}", *notes]
        embed = _cached_embedder(clip) if clip is not None else None
        rec = recommend(index, analysis, family=family_id, max_loras=max_loras, priority=priority,
                        blocklist=blocklist, weights=weights,
                        history=_history() if weight_history > 0 else None, embed=embed, content=content,
                        allow_other_variants=allow_other_variants, base=base)
        rec.notes += notes
        return (rec.stack(), rec.trigger_text(), rec.explain("detailed"))


class KubikApplyLoraStack:
    CATEGORY = "KubikAI/loras"
    FUNCTION = "apply"
    DESCRIPTION = ("Applies every LoRA of a stack to MODEL and CLIP with ComfyUI's own LoRA loader "
                   "(as chained LoraLoader nodes would), and can append the trigger words to a prompt.")
    RETURN_TYPES = ("MODEL", "CLIP", "STRING")
    RETURN_NAMES = ("model", "clip", "prompt")
    OUTPUT_TOOLTIPS = ("The model with the LoRAs applied.", "The CLIP with the LoRAs applied.",
                       "The prompt, with the trigger words appended when add_trigger_words is on.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The model to patch."}),
                "clip": ("CLIP", {"tooltip": "The CLIP to patch."}),
                "lora_stack": ("KUBIK_LORA_STACK", {"tooltip": "From Kubik LoRA Recommender or Kubik LoRA "
                               "Stack (in an API prompt also the JSON of a stack: {\"items\": [{\"name\", "
                               "\"strength_model\", \"strength_clip\"}]})."}),
                "add_trigger_words": ("BOOLEAN", {"default": True, "tooltip":
                                      "Append the LoRAs' trigger words to prompt, those not already in it "
                                      "(as whole words, whatever weights or brackets surround them)."}),
            },
            "optional": {
                "prompt": ("STRING", {"forceInput": True, "tooltip":
                           "Positive prompt to extend with trigger words (e.g. Kubik Prompt Analyzer's positive)."}),
            },
        }

    def apply(self, model, clip, lora_stack, add_trigger_words, prompt=""):
        lora_stack = stack_from_input(lora_stack, "lora_stack")
        progress = bridge.progress_bar(max(1, len(lora_stack)))
        for item in lora_stack.items:
            # Always by name inside ComfyUI's loras folders: a stack's own path is never opened.
            path = bridge.lora_path(item.name)
            if path is None:
                raise ValueError(f"lora_stack: LoRA {item.name[:200]!r} is not in ComfyUI's loras folders; "
                                 "rescan by re-running the recommender, or remove it from the stack")
            _check_lora_file(path, item.name)
            try:
                model, clip = bridge.apply_lora(model, clip, path, item.strength_model, item.strength_clip)
            except RuntimeError as exc:  # outside ComfyUI, or ComfyUI's loader refused the file
                raise RuntimeError(f"lora_stack: {_first_line(exc, path, item.name)}") from None
            except Exception as exc:  # noqa: BLE001 - ComfyUI's loader raises several types for bad files
                raise ValueError(f"lora_stack: LoRA {item.name} cannot be loaded "
                                 f"({_first_line(exc, path, item.name)}); replace the file or remove it "
                                 "from the stack") from None
            progress.update(1)
        text = prompt or ""
        if add_trigger_words:
            missing = lora_stack.triggers_missing_from(text)
            text = ", ".join(p for p in (text.strip().rstrip(","), ", ".join(missing)) if p)
        return (model, clip, text)


def _check_lora_file(path: str, name: str) -> None:
    """Read a .safetensors LoRA's header with the bounded reader before ComfyUI loads it, so a
    damaged or crafted file is one clear error naming it relative to the loras folder."""
    if not name.lower().endswith(SAFETENSORS_EXTENSIONS):
        return
    try:
        read_header(path, name)
    except SafetensorsFileError as exc:
        raise ValueError(f"lora_stack: LoRA {exc}; replace the file or remove it from the stack") from None


def _first_line(exc: Exception, path: str, name: str) -> str:
    """An error's first line with the server path replaced by the LoRA's name."""
    text = str(exc).replace(path, name).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class KubikLoraStack:
    CATEGORY = "KubikAI/loras"
    FUNCTION = "build"
    DESCRIPTION = ("Builds a LoRA stack by hand (for MANUAL choices), optionally after another stack. "
                   "A total strength above 3.0 is scaled down.")
    RETURN_TYPES = ("KUBIK_LORA_STACK", "STRING")
    RETURN_NAMES = ("lora_stack", "trigger_words")
    OUTPUT_TOOLTIPS = ("The stack: link to Kubik Apply LoRA Stack.",
                       "Trigger words of the stack's LoRAs, comma-separated.")
    SLOTS = 3

    @classmethod
    def INPUT_TYPES(cls):
        names = ["None", *bridge.lora_names()]
        required = {}
        for n in range(1, cls.SLOTS + 1):
            required[f"lora_{n}"] = (names, {"default": "None", "tooltip": f"LoRA {n} ('None' = unused)."})
            required[f"strength_model_{n}"] = ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0,
                                                         "step": 0.05, "tooltip": f"Model strength of LoRA {n}."})
            required[f"strength_clip_{n}"] = ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0,
                                                        "step": 0.05, "tooltip": f"CLIP strength of LoRA {n}."})
        return {"required": required,
                "optional": {"lora_stack": ("KUBIK_LORA_STACK", {"tooltip": "A stack to extend (e.g. the recommender's)."})}}

    def build(self, lora_1, strength_model_1, strength_clip_1, lora_2, strength_model_2, strength_clip_2,
              lora_3, strength_model_3, strength_clip_3, lora_stack=None):
        chosen = [(lora_1, strength_model_1, strength_clip_1), (lora_2, strength_model_2, strength_clip_2),
                  (lora_3, strength_model_3, strength_clip_3)]
        if lora_stack is not None:
            lora_stack = stack_from_input(lora_stack, "lora_stack")
        for slot, (name, sm, sc) in enumerate(chosen, 1):
            try:  # ComfyUI's min/max check lets NaN through; outside ComfyUI nothing checks names
                check_strength(sm, f"strength_model_{slot}")
                check_strength(sc, f"strength_clip_{slot}")
            except LoraStackError as exc:
                raise ValueError(str(exc)) from None
            try:
                if name != "None":
                    check_lora_name(name)
            except LoraStackError as exc:
                raise ValueError(f"lora_{slot}: {exc}") from None
        known = {}
        if any(name != "None" for name, _, _ in chosen):
            library, _index = _library()
            known = {e.name: e for e in library.entries.values()}
        items = []
        for slot, (name, sm, sc) in enumerate(chosen, 1):
            if name == "None":
                continue
            path = bridge.lora_path(name)
            if path is None:
                raise ValueError(f"lora_{slot}: {name[:200]!r} is not in ComfyUI's loras folders")
            entry = known.get(name)
            items.append(StackItem(name=name, strength_model=sm, strength_clip=sc, path=path,
                                   triggers=list(entry.triggers) if entry else [],
                                   sha256=entry.sha256 if entry else "", autov2=entry.autov2 if entry else ""))
        stack = LoraStack(items)
        if rebalance(stack.items):
            stack.notes.append("total strength above 3.0: every strength scaled down by the same factor")
        if lora_stack is not None:
            stack = lora_stack.added(stack)
        return (stack, stack.trigger_text())


class KubikEmbeddingRecommender:
    CATEGORY = "KubikAI/loras"
    FUNCTION = "recommend"
    DESCRIPTION = ("Proposes textual-inversion embeddings from ComfyUI's embeddings folders: negative "
                   "embeddings made for the model's base (SD1.x, SD2.x or SDXL, told by the tensor "
                   "shapes) for the negative prompt, and embeddings the prompt names for the positive "
                   "one, written as embedding:name with a reason each. Pickle files are listed, never read.")
    RETURN_TYPES = ("STRING", "STRING", "STRING", "STRING", "KUBIK_EMBEDDING_ADVICE")
    RETURN_NAMES = ("positive_embeddings", "negative_embeddings", "negative_prompt", "reasons", "advice")
    OUTPUT_TOOLTIPS = (
        "Embeddings for the positive prompt, as embedding:name, comma-separated (add them to your prompt).",
        "Negative embeddings for the model's base, as embedding:name, comma-separated.",
        "The negative embeddings followed by the analysis' proposed negative prompt (or your "
        "negative text): link to the negative CLIP Text Encode's text.",
        "Why each embedding was proposed or left out, and the problems of unreadable files.",
        "The proposal with its reasons: link to Kubik Explain to see it beside the other choices.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "family": (["auto", *FAMILY_IDS], {"default": "auto", "tooltip":
                           "Model family whose base the embeddings must fit; 'auto' detects it from "
                           "the connected MODEL."}),
                "max_negative": ("INT", {"default": 2, "min": 0, "max": 8, "tooltip":
                                 "Most negative embeddings to propose (those made for the model's variant "
                                 "first, then the most downloaded)."}),
            },
            "optional": {
                "analysis": ("KUBIK_PROMPT_ANALYSIS", {"tooltip":
                             "Output of Kubik Prompt Analyzer: positive embeddings are proposed when the "
                             "prompt names them; its negative prompt follows the negative embeddings."}),
                "model": ("MODEL", {"tooltip": "The loaded model; needed when family is 'auto'."}),
                "negative_text": ("STRING", {"default": "", "multiline": True, "tooltip":
                                  "Your own negative prompt (optional): used after the negative embeddings "
                                  "instead of the analysis' proposal."}),
            },
            "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def IS_CHANGED(cls, **_inputs):
        """Re-run when a file in the embeddings folders changed."""
        from ..kubik_core.loras.embeddings import scan_embeddings

        library = scan_embeddings(bridge.embedding_folders())
        return hash(tuple((e.name, e.size) for e in library.entries))

    def recommend(self, family, max_negative, analysis=None, model=None, negative_text="", prompt=None,
                  unique_id=None):
        from ..kubik_core.loras.embeddings import recommend_embeddings, scan_embeddings

        notes = []
        if family == "auto":
            if model is None:
                raise ValueError("family: 'auto' needs a MODEL: connect your checkpoint loader's MODEL "
                                 "to the model input, or pick the family from the list")
            info, notes = _model_info(model, prompt, unique_id)
            family = detect_family(info, "auto").family
        folders = bridge.embedding_folders()
        library = scan_embeddings(folders)
        advice = recommend_embeddings(library.entries, analysis, family, max_negative)
        advice.notes += notes + library.problems
        if not folders:
            advice.notes.append("no embeddings folder: ComfyUI has no 'embeddings' folder configured")
        elif not library.entries:
            advice.notes.append("the embeddings folders hold no embedding file")
        base_negative = (negative_text or "").strip() or (getattr(analysis, "negative", "") or "")
        negative_prompt = ", ".join(part for part in (advice.negative_text, base_negative) if part)
        return (advice.positive_text, advice.negative_text, negative_prompt, advice.explain("detailed"),
                advice)


NODE_CLASS_MAPPINGS = {
    "KubikLoraRecommender": KubikLoraRecommender,
    "KubikApplyLoraStack": KubikApplyLoraStack,
    "KubikLoraStack": KubikLoraStack,
    "KubikEmbeddingRecommender": KubikEmbeddingRecommender,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "KubikLoraRecommender": "Kubik LoRA Recommender",
    "KubikApplyLoraStack": "Kubik Apply LoRA Stack",
    "KubikLoraStack": "Kubik LoRA Stack",
    "KubikEmbeddingRecommender": "Kubik Embedding Recommender",
}
