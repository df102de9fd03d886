"""Learning nodes: Kubik Save Image (records the generation), Kubik Feedback (rates it) and
Kubik Preset Picker (chooses the optimizer's priority from past ratings).

The store is <ComfyUI user directory>/kubik/learning.sqlite3 (SQLite, WAL) unless
$KUBIK_LEARNING_URL names another file or a SQLAlchemy URL (PostgreSQL, shared by servers):
the rule lives in kubik_core.learning.location.
A store problem is one clear line naming the store and the fix; a read-only store still feeds
the Preset Picker, the optimizer's learned values and the LoRA recommender.

With ComfyUI's --disable-metadata, Kubik Save Image writes no PNG text at all (no workflow, no
A1111 'parameters', no 'kubik' analysis), as ComfyUI's Save Image writes none then.

Rating an image: the stars, tags and note above the image on Kubik Save Image (web/kubik_rate.js)
post to /kubik/learning/rating with that image's generation id, which Save Image passes to the
editor in its "ui" output (``kubik_generation_ids``, one per image); nothing is queued. Rating an
image again replaces its rating. Kubik Feedback rates by generation id too, for API users (a
prompt holding only Kubik Feedback with the id from /history) and for graphs that link it to
Save Image. It never rates an image made in the same run: with a seed on "randomize", queueing
again makes a new image that nobody has seen, and the rating was meant for the old one.
"""
from __future__ import annotations

import os

import numpy as np

from . import comfy_bridge as bridge
from ..kubik_core import __version__
from ..kubik_core.common.atomic import atomic_path
from ..kubik_core.learning import GenerationRecord, LearningError, ParameterEdits, UnknownGenerationError
from ..kubik_core.learning.location import RunGenerations, existing_store, open_store
from ..kubik_core.learning.model_hashes import add_resource_hashes, hash_cache
from ..kubik_core.learning.pnginfo import a1111_parameters, graph_seed_and_model, png_text_chunks
from ..kubik_core.params import FAMILY_IDS, PRIORITIES


def _kubik_dir() -> str | None:
    """The pack's folder in ComfyUI's user directory (not created), or None outside ComfyUI."""
    return bridge.kubik_user_directory(create=False)


# The generations Kubik Save Image recorded in the prompt ComfyUI is running now: Kubik Feedback
# refuses to rate them (their images were not on screen when the rating was set).
_THIS_RUN = RunGenerations()


def _field(obj, name, default=None):
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


class KubikSaveImage:
    CATEGORY = "KubikAI/learning"
    FUNCTION = "save"
    OUTPUT_NODE = True
    DESCRIPTION = ("Saves PNGs like ComfyUI's Save Image (the workflow is embedded), plus an "
                   "AUTOMATIC1111 'parameters' text with LoRA hashes that CivitAI reads, and the Kubik "
                   "analysis and explanation; records the generation, and shows stars, tags and "
                   "a note above the image to rate it without queueing anything.")
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("generation_id",)
    OUTPUT_TOOLTIPS = ("Id of the recorded generation (first image of the batch): link to Kubik Feedback.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": ("STRING", {"default": "kubik/Kubik", "tooltip":
                                    "File name prefix under the output folder (subfolders allowed)."}),
                "record": ("BOOLEAN", {"default": True, "tooltip":
                           "Record the generation in the learning store (needed for Kubik Feedback)."}),
            },
            "optional": {
                "analysis": ("KUBIK_PROMPT_ANALYSIS", {"tooltip": "Output of Kubik Prompt Analyzer."}),
                "plan": ("KUBIK_SAMPLING_PLAN", {"tooltip": "Output of Kubik Parameter Optimizer."}),
                "lora_stack": ("KUBIK_LORA_STACK", {"tooltip": "The LoRAs applied (their hashes go into the PNG)."}),
                "positive": ("STRING", {"forceInput": True, "tooltip": "The positive prompt as encoded."}),
                "negative": ("STRING", {"forceInput": True, "tooltip": "The negative prompt as encoded."}),
                "seed": ("INT", {"forceInput": True, "tooltip":
                         "The sampler's seed; unlinked, it is read from the graph's one KSampler."}),
                "model_name": ("STRING", {"forceInput": True, "tooltip":
                               "Checkpoint name for the A1111 text; unlinked, read from the loader feeding the KSampler."}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save(self, images, filename_prefix, record, analysis=None, plan=None, lora_stack=None,
             positive=None, negative=None, seed=None, model_name=None, prompt=None, extra_pnginfo=None):
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo

        from ..kubik_core.explain import explain
        from ..kubik_core.loras.stack import stack_from_input

        if images is None or len(images) == 0:
            raise ValueError("images: the batch is empty; connect a VAE Decode output")
        if lora_stack is not None:  # an API prompt may pass a dict or JSON instead of the object
            lora_stack = stack_from_input(lora_stack)
        graph_seed, graph_model = graph_seed_and_model(prompt)
        seed = seed if seed is not None else graph_seed
        model_name = model_name or graph_model
        positive = positive if positive is not None else _field(analysis, "cleaned", "") or ""
        negative = negative if negative is not None else _field(analysis, "negative", "") or ""
        # Everything about each LoRA but its local path, which has no place in a shared image.
        loras = [{k: v for k, v in vars(item).items() if k != "path"} for item in lora_stack.items] \
            if lora_stack is not None else []
        sections = [lora_stack] if lora_stack is not None and len(lora_stack) else []
        explanation = explain(analysis, plan, "standard", sections=sections) \
            if (analysis is not None or plan is not None or sections) else ""
        model_hash = add_resource_hashes(   # CivitAI links the resources by these (model_hashes.py)
            loras, bridge.model_file_path("checkpoints", model_name) if model_name else None,
            bridge.lora_path, hash_cache(bridge.kubik_user_directory(create=False)))
        parameters = a1111_parameters(positive, negative, plan, seed, model_name or "", loras,
                                      version=f"KubikAI {__version__}", model_hash=model_hash)
        kubik = {"version": __version__,
                 "analysis": analysis.to_dict() if hasattr(analysis, "to_dict") else analysis,
                 "plan": plan.to_dict() if hasattr(plan, "to_dict") else plan,
                 "loras": loras, "explanation": explanation}
        height, width = int(images.shape[1]), int(images.shape[2])
        folder, filename, counter, subfolder, _prefix = bridge.save_image_path(filename_prefix, width, height)
        chunks = [] if bridge.metadata_disabled() else png_text_chunks(prompt, extra_pnginfo, parameters, kubik)
        results, paths = [], []
        for batch_number, image in enumerate(images):
            pixels = np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8)
            info = PngInfo() if chunks else None
            for key, text in chunks:
                info.add_text(key, text)
            name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
            path = os.path.join(folder, name)
            with atomic_path(path) as tmp:
                Image.fromarray(pixels).save(tmp, format="PNG", pnginfo=info, compress_level=4)
            results.append({"filename": name, "subfolder": subfolder, "type": "output"})
            paths.append(path)
            counter += 1
        ids = []
        if record:   # after the images are safe on disk: a store problem never loses an image
            try:
                ids = self._record(paths, positive, negative, plan, analysis, model_name, seed, kubik, loras)
            except LearningError as exc:
                raise ValueError(f"record: the images were saved ({', '.join(r['filename'] for r in results)}) "
                                 f"but not recorded: {exc}. Turn 'record' off to save without the "
                                 "learning store.") from exc
            _THIS_RUN.remember(bridge.running_prompt_id(), ids)
        # kubik_generation_ids: the id of each image, in the order of "images", for the rating
        # widget (web/kubik_rate.js); empty when 'record' is off.
        return {"ui": {"images": results, "kubik_generation_ids": ids},
                "result": (ids[0] if ids else "",)}

    @staticmethod
    def _record(paths, positive, negative, plan, analysis, model_name, seed, kubik, loras) -> list[str]:
        """One generation per image and the user's edits of the plan, in one transaction."""
        rows = [{k: item[k] for k in ("name", "sha256", "strength_model", "strength_clip", "suggested")}
                for item in loras]
        records = [GenerationRecord(
            prompt=positive, negative=negative, family=_field(plan, "family", "") or "",
            style=_field(analysis, "style", "") or "", content_type=_field(analysis, "content_type", "") or "",
            model=model_name or "", seed=seed, preset=_field(plan, "priority", "") or "", image_path=path,
            analysis=kubik["analysis"] or {}, params=kubik["plan"] or {}, loras=rows) for path in paths]
        edits = ParameterEdits(_field(plan, "family", ""), _field(analysis, "style", "") or "",
                               _field(plan, "suggested", {}) or {}, _field(plan, "overrides", {}) or {}) \
            if plan is not None and _field(plan, "overrides") else None
        return open_store(_kubik_dir()).record_generations(records, edits)


class KubikFeedback:
    CATEGORY = "KubikAI/learning"
    FUNCTION = "rate"
    OUTPUT_NODE = True
    DESCRIPTION = ("Rates an image Kubik Save Image recorded, by its generation id (1-5 stars, optional "
                   "sub-ratings, tags and a note); rating it again replaces its rating. The LoRA "
                   "recommender, the Preset Picker and `kubik insights` use these ratings. Rating 0 "
                   "records nothing, and an image made in the same run is never rated (nobody has "
                   "seen it yet): rate it with the stars above it on Kubik Save Image. API users "
                   "queue this node alone with the generation id from /history.")
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("summary",)
    OUTPUT_TOOLTIPS = ("What was recorded.",)

    @classmethod
    def INPUT_TYPES(cls):
        sub = lambda what: ("INT", {"default": 0, "min": 0, "max": 5, "tooltip": f"{what} from 1 to 5; 0 = not rated."})
        return {
            "required": {
                "generation_id": ("STRING", {"forceInput": True, "tooltip":
                                  "From Kubik Save Image (in an API prompt: the id from /history's "
                                  "kubik_generation_ids)."}),
                "rating": ("INT", {"default": 0, "min": 0, "max": 5, "tooltip":
                           "Overall rating 1 (bad) to 5 (great); 0 = not rated yet (nothing is recorded)."}),
                "quality": sub("Technical quality"),
                "accuracy": sub("How well the image follows the prompt"),
                "aesthetic": sub("How much you like the look"),
                "tags": ("STRING", {"default": "", "tooltip": "Comma-separated tags (e.g. 'bad hands, keeper')."}),
                "comment": ("STRING", {"default": "", "multiline": True, "tooltip": "A free note."}),
                "saved": ("BOOLEAN", {"default": False, "tooltip": "You kept the image."}),
                "shared": ("BOOLEAN", {"default": False, "tooltip": "You shared the image."}),
                "regenerated": ("BOOLEAN", {"default": False, "tooltip": "You regenerated because it was not right."}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, **_inputs):
        """Run on every queue (NaN never equals itself): a rating refused because the image was
        new is recorded once the same image comes back from ComfyUI's cache. Recording it again
        replaces the same rating, never adds one."""
        return float("nan")

    def rate(self, generation_id, rating, quality, accuracy, aesthetic, tags, comment, saved, shared,
             regenerated):
        if isinstance(generation_id, str):
            generation_id = generation_id.strip()
        if not generation_id:
            raise ValueError("generation_id: empty; link Kubik Save Image's generation_id with its "
                             "'record' switch on")
        if rating == 0:
            text = "not rated yet: set rating (1-5) and queue again to record it"
            return {"ui": {"text": [text]}, "result": (text,)}
        if isinstance(generation_id, str) and _THIS_RUN.made_in(bridge.running_prompt_id(), generation_id):
            text = (f"not recorded: generation {generation_id[:8]} is a new image made by this run, "
                    "not the one on screen when the rating was set (a seed on 'randomize' makes a new "
                    "image on every queue). Rate images with the stars above them on Kubik Save "
                    "Image, or set the seeds' control to 'fixed' and queue again.")
            return {"ui": {"text": [text]}, "result": (text,)}
        try:
            open_store(_kubik_dir()).record_feedback(generation_id, rating, quality or None, accuracy or None,
                                         aesthetic or None, tags=tags, comment=comment,
                                         saved=saved, shared=shared, regenerated=regenerated)
        except UnknownGenerationError as exc:
            raise ValueError(f"generation_id: {exc}") from exc
        except LearningError as exc:
            raise ValueError(str(exc)) from exc   # names the field at fault, or the store and the fix
        text = f"recorded {rating}/5 for generation {generation_id[:8]}"
        return {"ui": {"text": [text]}, "result": (text,)}


class KubikPresetPicker:
    CATEGORY = "KubikAI/learning"
    FUNCTION = "pick"
    DESCRIPTION = ("Chooses the optimizer's priority (quality, balanced or speed) for this model family "
                   "and prompt style from your ratings of past images: Thompson sampling tries each "
                   "now and then and settles on the one you rate best; UCB1 does the same deterministically.")
    RETURN_TYPES = (list(PRIORITIES), "STRING")
    RETURN_NAMES = ("priority", "summary")
    OUTPUT_TOOLTIPS = ("Link to Kubik Parameter Optimizer's priority.",
                       "The choice and the ratings behind it.")
    PRESETS = ("quality", "balanced", "speed")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "family": (list(FAMILY_IDS), {"default": "sdxl", "tooltip":
                           "Model family the ratings are counted for (as the optimizer reports it)."}),
                "method": (["thompson", "ucb1"], {"default": "thompson", "tooltip":
                           "thompson: random draws from each preset's Beta(good+1, bad+1); ucb1: deterministic."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "tooltip":
                         "Seed of the Thompson draw (same seed and ratings, same choice)."}),
            },
            "optional": {
                "analysis": ("KUBIK_PROMPT_ANALYSIS", {"tooltip":
                             "Prompt analysis: ratings are counted for its style (all styles without it)."}),
            },
        }

    def pick(self, family, method, seed, analysis=None):
        import random

        from ..kubik_core.learning import choose_from_outcomes

        style = _field(analysis, "style", "") or ""
        style = "" if style == "unknown" else style
        try:   # reading only: no store yet means no ratings yet, and a read-only store works
            store = existing_store(_kubik_dir())
            outcomes = store.preset_outcomes(family, style) if store is not None else {}
        except LearningError as exc:
            raise ValueError(f"{exc} (Kubik Preset Picker reads its ratings; pick the priority by "
                             "hand meanwhile)") from exc
        choice = choose_from_outcomes(self.PRESETS, outcomes, method=method, rng=random.Random(seed))
        counts = ", ".join(f"{p} {outcomes.get(p, (0, 0))[0]} good / {outcomes.get(p, (0, 0))[1]} bad"
                           for p in self.PRESETS)
        summary = f"{choice} for {family}{f' ({style})' if style else ''} by {method}: {counts}"
        return (choice, summary)


NODE_CLASS_MAPPINGS = {"KubikSaveImage": KubikSaveImage, "KubikFeedback": KubikFeedback,
                       "KubikPresetPicker": KubikPresetPicker}
NODE_DISPLAY_NAME_MAPPINGS = {"KubikSaveImage": "Kubik Save Image", "KubikFeedback": "Kubik Feedback",
                              "KubikPresetPicker": "Kubik Preset Picker"}
