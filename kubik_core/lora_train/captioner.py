"""Captions for training pictures that have none, from a captioning model the user keeps locally.

The model is a BLIP captioner (``BlipForConditionalGeneration``, e.g.
``Salesforce/blip-image-captioning-base``) saved once as a folder in the transformers layout:
``config.json`` + ``model.safetensors`` + the processor's files. Nothing is downloaded. Before
transformers sees the folder, its JSON files are read by us (bounded JSON, bounded sizes), the
config's sizes are capped, and the model is sized on the meta device and compared with the
weights file's header, so a crafted config cannot allocate more than the file holds. The model
is loaded once, captions every picture that needs one in batches, and is freed before training.
"""
from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Callable, Sequence

from ..common.files import NotRegularFileError, read_regular
from ..common.model_config import (ConfigFileError, load_config_file, loaded_but_missing, quiet_transformers,
                                   size_problem)
from ..common.weights import WeightsFileError, parameter_count, tensor_shapes
from .dataset import DatasetError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MAX_CONFIG_BYTES = 1024 * 1024
MAX_TOKENIZER_BYTES = 64 * 1024 * 1024   # BLIP's tokenizer.json is ~700 kB; vocab.txt ~230 kB
# The processor's files transformers reads: the image processor's settings are parsed by us first
# (the picture size it resizes to is capped), the tokenizer's files only sized (a saved
# tokenizer_config.json may hold model_max_length = 1e30, which is fine for transformers).
IMAGE_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
MAX_PICTURE_SIDE = 4096
MAX_NEW_TOKENS = 40                       # a caption is a sentence
BATCH_SIZE = 8

# Caps on the config's sizes: far above BLIP-large (24 vision layers, 1024 wide, 384 pixels),
# low enough that a crafted config cannot make even the meta build hang.
_LIMITS = {"num_hidden_layers": 128, "hidden_size": 16384, "intermediate_size": 65536,
           "num_attention_heads": 512, "image_size": 4096, "patch_size": 512, "vocab_size": 1_000_000,
           "max_position_embeddings": 65536, "encoder_hidden_size": 16384, "projection_dim": 16384}


class CaptionModelError(DatasetError):
    """A --caption-model folder that cannot be used; the message names the file and the fix."""


def _read_json(path: Path, what: str) -> dict:
    try:
        return load_config_file(path, MAX_CONFIG_BYTES)
    except ConfigFileError as exc:
        fix = ("; save the captioning model with save_pretrained (config.json, model.safetensors and its "
               "processor)") if exc.missing else ""
        raise CaptionModelError(f"{what}: {exc}{fix}") from None


def _check_sizes(config: dict, part: str, what: str) -> None:
    problem = size_problem(config, _LIMITS, f"config.json {part}")
    if problem:
        raise CaptionModelError(f"{what}: {problem}")


def _check_processor_files(folder: Path, what: str) -> None:
    for name in IMAGE_PROCESSOR_FILES:
        if not (folder / name).exists():
            continue
        data = _read_json(folder / name, what)
        image = data.get("image_processor", data)
        size = image.get("size", {}) if isinstance(image, dict) else None
        sides = list(size.values()) if isinstance(size, dict) else [size]
        if not all(isinstance(side, int) and not isinstance(side, bool) and 1 <= side <= MAX_PICTURE_SIDE
                   for side in sides):
            raise CaptionModelError(f"{what}: {name} image size {str(size)[:60]} is not whole numbers from 1 "
                                    f"to {MAX_PICTURE_SIDE}")
    if not any((folder / name).exists() for name in TOKENIZER_FILES[:2]):
        raise CaptionModelError(f"{what}: no tokenizer (tokenizer.json or vocab.txt); save the processor "
                                "with the model (processor.save_pretrained into the same folder)")
    for name in TOKENIZER_FILES:
        if (folder / name).exists():
            try:
                read_regular(folder / name, MAX_TOKENIZER_BYTES)
            except (NotRegularFileError, OSError) as exc:
                raise CaptionModelError(f"{what}: cannot read {name} ({exc.strerror or exc}; at most "
                                        f"{MAX_TOKENIZER_BYTES} bytes)") from None


def _settings(config: dict, what: str):
    from transformers import BlipConfig

    if config.get("model_type") != "blip":
        raise CaptionModelError(f"{what}: config.json model_type is {str(config.get('model_type'))[:40]!r}; "
                                "--caption-model takes a BLIP captioner ('blip', e.g. "
                                "Salesforce/blip-image-captioning-base saved with save_pretrained)")
    _check_sizes(config, "", what)
    for part in ("text_config", "vision_config"):
        sub = config.get(part, {})
        if not isinstance(sub, dict):
            raise CaptionModelError(f"{what}: config.json {part} must be an object")
        _check_sizes(sub, f"{part}.", what)
    try:
        return BlipConfig.from_dict({k: v for k, v in config.items() if k != "model_type"})
    except Exception as exc:  # transformers refusing a value
        raise CaptionModelError(f"{what}: config.json does not describe a valid BLIP model "
                                f"({' '.join(str(exc).split())[:200]})") from None


class Captioner:
    """A loaded BLIP captioner: pictures -> one caption each (greedy decoding: the same
    pictures always get the same captions, on every process of a torchrun)."""

    def __init__(self, model, processor, device):
        self.model = model
        self.processor = processor
        self.device = device

    def caption(self, paths: Sequence[Path]) -> list[str]:
        import torch
        from PIL import Image

        captions = []
        for start in range(0, len(paths), BATCH_SIZE):
            images = []
            for path in paths[start:start + BATCH_SIZE]:
                with Image.open(path) as image:
                    images.append(image.convert("RGB"))
            inputs = self.processor(images=images, return_tensors="pt").to(self.device)
            with torch.no_grad():
                tokens = self.model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, num_beams=1,
                                             do_sample=False)
            captions += [" ".join(text.split()) for text in
                         self.processor.batch_decode(tokens, skip_special_tokens=True)]
        return captions


def load_captioner(path: str | os.PathLike, device="cpu") -> Captioner:
    """The BLIP captioner in folder ``path``, offline, checked before anything is allocated.
    Raises CaptionModelError with one line naming the file and what is wrong with it."""
    import torch
    from transformers import BlipForConditionalGeneration, BlipProcessor

    folder = Path(path)
    what = f"--caption-model {folder.name or path}"
    if not folder.is_dir():
        raise CaptionModelError(f"{what}: no such folder; give the folder a BLIP captioner was saved to "
                                "(config.json, model.safetensors, processor files)")
    settings = _settings(_read_json(folder / CONFIG_NAME, what), what)
    weights = folder / WEIGHTS_NAME
    if not weights.exists():
        raise CaptionModelError(f"{what}: {WEIGHTS_NAME} is missing beside config.json")
    _check_processor_files(folder, what)
    try:
        with torch.device("meta"):   # parameters() counts tied weights once, as the file holds them
            expected = sum(p.numel() for p in BlipForConditionalGeneration(settings).parameters())
        found = parameter_count(tensor_shapes(weights))
    except WeightsFileError as exc:
        raise CaptionModelError(f"{what}: {exc}") from None
    except Exception as exc:  # e.g. heads not dividing the width
        raise CaptionModelError(f"{what}: config.json does not describe a valid BLIP model "
                                f"({' '.join(str(exc).split())[:200]})") from None
    if found != expected:
        raise CaptionModelError(f"{what}: {WEIGHTS_NAME} holds {found:,} weights but config.json describes "
                                f"{expected:,}; the weights belong to another model")
    try:
        with quiet_transformers():
            model, info = BlipForConditionalGeneration.from_pretrained(
                folder, config=settings, local_files_only=True, use_safetensors=True, output_loading_info=True)
            processor = BlipProcessor.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # a damaged file, a processor file missing
        reason = " ".join(str(exc).replace(str(folder), folder.name).split())[:200]  # no server paths
        raise CaptionModelError(f"{what}: cannot load the model or its processor ({reason})") from None
    missing = loaded_but_missing(info)
    if missing:
        raise CaptionModelError(f"{what}: {WEIGHTS_NAME} lacks {len(missing)} weight(s) of the model its "
                                f"config describes (first: {missing[0]}); the weights belong to another model")
    return Captioner(model.to(device=device, dtype=torch.float32).eval(), processor, device)


def captions_from_model(path: str | os.PathLike, device="cpu", log: Callable[[str], None] = print
                        ) -> Callable[[list[Path]], list[str]]:
    """``caption(paths) -> captions`` for dataset.load_items: loads the model on its one call,
    captions every picture given, and frees the model (and its GPU memory) before returning."""
    def caption(paths: list[Path]) -> list[str]:
        import torch

        captioner = load_captioner(path, device)
        log(f"captioning {len(paths)} picture(s) without a .txt caption with {Path(path).name}")
        try:
            return captioner.caption(paths)
        finally:
            del captioner
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return caption
