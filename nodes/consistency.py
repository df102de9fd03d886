"""Character consistency node: which pictures of a batch still look like the character?

The engine is ``kubik_core.consistency``; this class converts ComfyUI's IMAGE/MASK batches into
named PIL pictures and masks, and wraps the encoder: ComfyUI's own CLIP_VISION model (Load CLIP
Vision: CLIP ViT-L/H/G, SigLIP, DINOv2), or a transformers-layout folder (config.json +
model.safetensors) in models/clip_vision, handed to ComfyUI's memory manager like our other
models.
"""
from __future__ import annotations

import json

from . import comfy_bridge

CATEGORY = "KubikAI/consistency"
FROM_INPUT = "clip_vision input"
CROP_CHOICES = ["smart", "center", "none"]


def _pictures(batch, input_name: str) -> list:
    """IMAGE [B,H,W,C] -> RGB PIL pictures, with errors naming the input."""
    import torch

    from ..kubik_core.classify.images import ImageError, float_array_to_pil

    if not isinstance(batch, torch.Tensor) or batch.ndim != 4 or batch.shape[0] == 0:
        shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise ValueError(f"{input_name}: expected a non-empty IMAGE batch [B,H,W,C], got {shape}")
    try:
        return [float_array_to_pil(frame.detach().float().cpu().numpy()) for frame in batch]
    except ImageError as exc:
        raise ValueError(f"{input_name}: {exc}") from None


def _masks(mask, images) -> list:
    """MASK [B,H,W] or [H,W] -> one float array per image (a single mask serves every image)."""
    import torch

    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3):
        raise ValueError("mask: expected a MASK [B,H,W], got "
                         f"{tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__}")
    mask = mask if mask.ndim == 3 else mask[None]
    count, height, width = images.shape[0], images.shape[1], images.shape[2]
    if tuple(mask.shape[1:]) != (height, width):
        raise ValueError(f"mask: {mask.shape[2]}x{mask.shape[1]} does not match the images' {width}x{height}; "
                         "give a mask made from these images")
    if mask.shape[0] not in (1, count):
        raise ValueError(f"mask: {mask.shape[0]} masks for {count} images; give one mask, or one per image")
    arrays = mask.detach().float().cpu().numpy()
    return [arrays[0 if arrays.shape[0] == 1 else i] for i in range(count)]


def _clip_vision_encoder(clip_vision):
    """ComfyUI's CLIP_VISION as an encoder: its image_embeds (CLIP's projection, DINOv2's CLS)."""
    import numpy as np
    import torch
    from PIL import Image

    from ..kubik_core.consistency.encoders import FunctionEncoder

    if not callable(getattr(clip_vision, "encode_image", None)):
        raise ValueError("clip_vision: connect the output of Load CLIP Vision, or choose a local encoder")
    size = int(getattr(clip_vision, "image_size", 224))

    def encode(crops):
        pixels = [np.asarray(c.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
                  for c in crops]
        return clip_vision.encode_image(torch.from_numpy(np.stack(pixels)), crop=False)["image_embeds"]

    return FunctionEncoder(encode, "ComfyUI CLIP_VISION")


def _folder_encoder(name: str):
    import os

    from ..kubik_core.consistency.encoders import load_encoder
    from ..kubik_core.consistency.errors import ConsistencyError

    folder = comfy_bridge.image_encoder_path(name)
    if folder is None:
        raise ValueError(f"encoder: {name!r} is not an encoder folder in models/clip_vision; choose one from "
                         f"the list, or '{FROM_INPUT}' with Load CLIP Vision connected")
    try:  # errors name the encoder as listed, never the server path
        loaded = comfy_bridge.load_model_file(
            "image_encoders", os.path.join(folder, "model.safetensors"),
            lambda file, device: load_encoder(os.path.dirname(file), device, name=name),
            lambda encoder: encoder.model)
    except ConsistencyError as exc:
        raise ValueError(f"encoder: {exc}") from None
    encoder = loaded.ready()
    encoder.device = next(encoder.model.parameters()).device
    return encoder


class KubikConsistency:
    DESCRIPTION = ("Scores each image against the character's reference pictures (cosine similarity of "
                   "CLIP or DINOv2 image embeddings after cropping to the character) and keeps those "
                   "that pass a threshold calibrated for this character: from the references' "
                   "leave-one-out scores and, when given, pictures of other subjects.")
    CATEGORY = CATEGORY
    FUNCTION = "score"
    RETURN_TYPES = ("IMAGE", "FLOAT", "FLOAT", "STRING")
    RETURN_NAMES = ("passing", "scores", "threshold", "report")
    OUTPUT_IS_LIST = (False, True, False, False)
    OUTPUT_TOOLTIPS = (
        "The images that pass, in their order (an empty batch when none pass).",
        "Each image's score (cosine similarity to the references' mean), a list in image order.",
        "The threshold used: calibrated, or the one you set.",
        "JSON report: per-image score, pass and crop; the calibration (leave-one-out scores, negative "
        "scores, threshold, margin, AUC, notes); as `kubik consistency --json` writes it.",
    )
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The pictures to check (e.g. from VAE Decode)."}),
                "references": ("IMAGE", {"tooltip": "Pictures of the character (a batch of at least 2; 5 "
                                                    "or more calibrate better)."}),
                "encoder": ([FROM_INPUT] + comfy_bridge.image_encoder_names(), {
                    "default": FROM_INPUT,
                    "tooltip": f"'{FROM_INPUT}': the model from Load CLIP Vision (CLIP, SigLIP or DINOv2). "
                               "Or a folder in models/clip_vision holding config.json and "
                               "model.safetensors (transformers CLIP vision or DINOv2)."}),
                "crop": (CROP_CHOICES, {
                    "default": "smart",
                    "tooltip": "Where there is no mask: crop to the salient object (smart), the centre "
                               "square, or use the whole picture (none). References and negatives are "
                               "cropped the same way."}),
                "threshold": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "0: calibrated for this character. Above 0: use this threshold instead "
                               "(the report still gives the calibrated one)."}),
            },
            "optional": {
                "clip_vision": ("CLIP_VISION", {"tooltip": f"From Load CLIP Vision; used when encoder is "
                                                           f"'{FROM_INPUT}'."}),
                "negatives": ("IMAGE", {"tooltip": "Pictures of other subjects: the negative control that "
                                                   "places the threshold between them and the references."}),
                "mask": ("MASK", {"tooltip": "The character in each image (one mask per image, or one for "
                                             "all): the crop is the mask's box."}),
            },
        }

    def score(self, images, references, encoder, crop, threshold, clip_vision=None, negatives=None,
              mask=None):
        import torch

        from ..kubik_core.consistency.errors import ConsistencyError
        from ..kubik_core.consistency.score import score_images

        if crop not in CROP_CHOICES:
            raise ValueError(f"crop: {crop!r} is not one of {', '.join(CROP_CHOICES)}")
        pictures = _pictures(images, "images")
        refs = _pictures(references, "references")
        if len(refs) < 2:
            raise ValueError(f"references: {len(refs)} picture; give a batch of at least 2 pictures of the "
                             "character (5 or more calibrate better)")
        negs = _pictures(negatives, "negatives") if negatives is not None else []
        masks = _masks(mask, images) if mask is not None else None
        if encoder == FROM_INPUT:
            if clip_vision is None:
                raise ValueError(f"clip_vision: encoder is '{FROM_INPUT}' but nothing is connected; connect "
                                 "Load CLIP Vision, or choose an encoder folder")
            model = _clip_vision_encoder(clip_vision)
        else:
            model = _folder_encoder(encoder)
        comfy_bridge.check_interrupt()
        try:
            report = score_images(model, [(f"reference {i}", p) for i, p in enumerate(refs)],
                                  [(f"image {i}", p) for i, p in enumerate(pictures)],
                                  [(f"negative {i}", p) for i, p in enumerate(negs)], crop, masks,
                                  threshold if threshold > 0 else None)
        except ConsistencyError as exc:
            raise ValueError(str(exc)) from None
        keep = torch.tensor(report.passed_indices, dtype=torch.long)
        passing = images.index_select(0, keep.to(images.device))
        scores = [image.score for image in report.images]
        return {"ui": {"text": [report.summary()]},
                "result": (passing, scores, float(report.calibration.threshold),
                           json.dumps(report.to_dict(), indent=1))}


NODE_CLASS_MAPPINGS = {"KubikConsistency": KubikConsistency}
NODE_DISPLAY_NAME_MAPPINGS = {"KubikConsistency": "Kubik Consistency"}
