"""Kubik Character: one character preset of the registry as a LoRA stack, prompt additions,
reference pictures and a consistency threshold.

Thin wrapper over kubik_core.characters. The registry is <ComfyUI user directory>/kubik/
characters.json (or $KUBIK_CHARACTERS_FILE), edited with `kubik characters`. ComfyUI reads
INPUT_TYPES again whenever the editor asks for /object_info (on load, and on "Refresh Node
Definitions", the R key), so a character added meanwhile appears in the menu then; a queued
prompt naming it is accepted at once (VALIDATE_INPUTS checks the registry itself).
"""
from __future__ import annotations

import logging
import os

from . import comfy_bridge as bridge
from ..kubik_core.characters import EXAMPLES, RegistryError, example, load_registry, registry_path

log = logging.getLogger(__name__)

DEFAULT_CHARACTER = EXAMPLES[0].name


def _registry():
    """(the registry, how errors name its file): never a server path, as errors reach the editor."""
    shown = ("$KUBIK_CHARACTERS_FILE" if os.environ.get("KUBIK_CHARACTERS_FILE")
             else "kubik/characters.json in ComfyUI's user folder")
    path = registry_path(bridge.kubik_user_directory(create=False))
    return load_registry(path, shown_as=shown)


def _character(name):
    """The character called ``name``: one of the registry's, else an example; ValueError otherwise."""
    if not isinstance(name, str):
        raise ValueError(f"character: expected a character's name, found {type(name).__name__}")
    try:
        registry = _registry()
    except RegistryError as exc:
        if example(name) is not None:
            return example(name), True
        raise ValueError(f"character: the registry cannot be read ({exc})") from None
    found = registry.find(name)
    if found is not None:
        return found, False
    if example(name) is not None:
        return example(name), True
    known = ", ".join(registry.names()[:20] + [c.name for c in EXAMPLES])
    raise ValueError(f"character: no character named {name[:64]!r} (known: {known}); add it with "
                     "`kubik characters add`, then refresh the editor (R)")


def _reference_paths(character, is_example: bool) -> list[tuple[str, str]]:
    """(path, label) of each reference: in the input folder, or for examples in the pack."""
    from ..kubik_core.characters import PictureError, reference_files

    try:
        files = reference_files(character, bridge.input_directory(), is_example,
                                input_shown_as="ComfyUI's input folder")
    except PictureError as exc:
        raise ValueError(f"character: {exc}") from None
    return [(str(path), f"reference picture {name!r} of {character.name!r}")
            for path, name in zip(files, character.references)]


def _signature(character, paths) -> str:
    """What the outputs depend on: the character's fields and its pictures' sizes and times."""
    parts = [repr(character.to_dict())]
    for path, _label in paths:
        try:
            stat = os.stat(path)
            parts.append(f"{stat.st_size}:{stat.st_mtime_ns}")
        except OSError:
            parts.append("missing")
    return "|".join(parts)


class KubikCharacter:
    CATEGORY = "KubikAI/characters"
    FUNCTION = "load"
    DESCRIPTION = ("One character preset from your registry (`kubik characters add`): its LoRAs with "
                   "their strengths as a LoRA stack, its trigger words, style and prompt additions "
                   "merged with your scene, its negative prompt, its reference pictures and its "
                   "consistency threshold. Link the stack to Kubik Apply LoRA Stack (or through Kubik "
                   "LoRA Recommender, which then keeps these LoRAs and adds no other character).")
    RETURN_TYPES = ("KUBIK_LORA_STACK", "STRING", "STRING", "IMAGE", "FLOAT")
    RETURN_NAMES = ("lora_stack", "positive", "negative", "references", "threshold")
    OUTPUT_TOOLTIPS = (
        "The character's LoRAs with their strengths, marked as this character's: link to Kubik Apply "
        "LoRA Stack, or to Kubik LoRA Recommender's lora_stack input.",
        "Trigger words, the character's positive additions, your scene and its style, comma-separated: "
        "link to Kubik Prompt Analyzer's prompt or a CLIP Text Encode.",
        "The character's negative prompt followed by your negative text.",
        "The reference pictures as one IMAGE batch (each cropped to its centred square at "
        "reference_size); an empty batch when the character has none. Link to Kubik Consistency.",
        "The consistency threshold stored with the character (a cosine similarity, 0 to 1); 0.0 when "
        "it has none yet, which Kubik Consistency's threshold input reads as 'calibrate'.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        try:
            names = _registry().names()
        except RegistryError as exc:  # the menu must still load; running the node names the problem
            log.warning("KubikAI: the character registry cannot be read: %s", exc)
            names = []
        names += [c.name for c in EXAMPLES if c.name.casefold() not in {n.casefold() for n in names}]
        return {
            "required": {
                "character": (names, {"default": DEFAULT_CHARACTER, "tooltip":
                              "The character preset. Yours come from `kubik characters add` (refresh the "
                              "editor with R to see new ones); 'Example (espresso cup)' ships with the pack."}),
                "prompt": ("STRING", {"multiline": True, "default": "", "tooltip":
                           "Your scene (what the character does, where): placed after the character's "
                           "trigger words and additions, before its style."}),
                "negative": ("STRING", {"multiline": False, "default": "", "tooltip":
                             "Negative words of your own, after the character's negative prompt."}),
                "reference_size": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8, "tooltip":
                                   "Side of the square each reference picture is cropped and resized to."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, character):
        """Check the name against the registry now, not against the menu the editor loaded: a
        character added since is accepted, a missing one gets a message saying what to do."""
        try:
            _character(character)
        except ValueError as exc:
            return str(exc)
        return True

    @classmethod
    def IS_CHANGED(cls, character, **_inputs):
        """Run again when the character's entry or one of its pictures changed."""
        try:
            found, is_example = _character(character)
            return _signature(found, _reference_paths(found, is_example))
        except ValueError:
            return float("nan")  # always run, so the node reports the problem

    def load(self, character, prompt, negative, reference_size):
        from ..kubik_core.characters.pictures import PictureError, load_batch

        found, is_example = _character(character)
        for name, value in (("prompt", prompt), ("negative", negative)):
            if not isinstance(value, str):
                raise ValueError(f"{name}: should be text, got {type(value).__name__}")
        for lora in found.loras:
            if bridge.lora_path(lora.name) is None:
                raise ValueError(f"character: LoRA {lora.name!r} of {found.name!r} is not in ComfyUI's loras "
                                 "folders; put the file there, or change the character's LoRAs "
                                 "(`kubik characters set --lora`)")
        if not isinstance(reference_size, int) or isinstance(reference_size, bool) \
                or not 64 <= reference_size <= 2048:
            raise ValueError(f"reference_size: should be a whole number from 64 to 2048, got {reference_size!r:.40}")
        try:
            references = load_batch(_reference_paths(found, is_example), reference_size)
        except PictureError as exc:
            raise ValueError(f"character: {exc}; replace the picture or change the character's references "
                             "(`kubik characters set --reference`)") from None
        threshold = found.threshold if found.threshold is not None else 0.0
        return (found.stack(), found.positive_prompt(prompt), found.negative_prompt(negative), references,
                threshold)


NODE_CLASS_MAPPINGS = {"KubikCharacter": KubikCharacter}
NODE_DISPLAY_NAME_MAPPINGS = {"KubikCharacter": "Kubik Character"}
