"""Classifier nodes: load an exported classifier, classify images, crop to the salient object.

The engine is ``kubik_core.classify``; these classes only convert ComfyUI types. Inside ComfyUI
the model is handed to ComfyUI's memory manager (ModelPatcher), so it is offloaded like any
checkpoint; outside it, models are kept in a small LRU cache (comfy_bridge.load_model_file).
The KUBIK_CLASSIFIER value is a comfy_bridge.ManagedModel holding a kubik_core Classifier.
"""
from __future__ import annotations

import json

from . import comfy_bridge

CATEGORY = "KubikAI/classify"
SMART_CROP_CHOICES = ["as trained", "on", "off"]
_BATCH = 16


def _ready(loaded: comfy_bridge.ManagedModel):
    """The classifier of a KUBIK_CLASSIFIER value on its compute device (ComfyUI loads and
    offloads it as needed), with bf16 autocast where the GPU supports it (fp32 weights kept)."""
    import torch

    classifier = loaded.ready()
    device = next(classifier.model.parameters()).device
    classifier.device = device
    classifier.amp = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "none"
    return classifier


def _to_pil_list(image, input_name: str = "image"):
    """ComfyUI IMAGE [B,H,W,C] -> list of RGB PIL images, with errors that name the input."""
    import torch

    from ..kubik_core.classify.images import ImageError, float_array_to_pil

    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[0] == 0:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{input_name}: expected a non-empty IMAGE batch [B,H,W,C], got {shape}")
    try:
        return [float_array_to_pil(frame.detach().float().cpu().numpy()) for frame in image]
    except ImageError as exc:
        raise ValueError(f"{input_name}: {exc}") from None


class KubikLoadClassifier:
    DESCRIPTION = ("Loads an image classifier exported by `kubik classify train` (a .safetensors "
                   "with its model card) from ComfyUI's models/classifiers folder.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("KUBIK_CLASSIFIER",)
    RETURN_NAMES = ("classifier",)
    OUTPUT_TOOLTIPS = ("The classifier (timm model, class names, preprocessing), for Kubik Classify Image.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "classifier_name": (comfy_bridge.CLASSIFIERS.names(), {
                "tooltip": "An exported classifier (.safetensors) in models/classifiers."}),
        }}

    def load(self, classifier_name):
        from ..kubik_core.classify.predict import Classifier

        path = comfy_bridge.CLASSIFIERS.path(classifier_name)
        if path is None:
            raise ValueError(f"classifier_name: {classifier_name!r} is not in the classifiers model "
                             "folder; copy an exported .safetensors (with its .json) into "
                             "models/classifiers and refresh")
        try:  # errors name the file as listed (relative to the folder), never the server path
            return (comfy_bridge.load_model_file(
                "classifiers", path,
                lambda file, device: Classifier.load(file, device, name=classifier_name),
                lambda classifier: classifier.model),)
        except FileNotFoundError:
            raise ValueError(f"classifier_name: {classifier_name!r} disappeared from the "
                             "classifiers folder; refresh the node list") from None
        except (ValueError, OSError) as exc:
            reason = (f"{classifier_name}: {exc.strerror}" if isinstance(exc, OSError) and exc.strerror
                      else str(exc))
            raise ValueError(f"classifier_name: {reason}; replace the file with a classifier "
                             "exported by `kubik classify train` or `kubik classify export`") from None


class KubikClassifyImage:
    DESCRIPTION = ("Classifies each image of a batch: the top label and score per image as lists, "
                   "and a JSON of the top-k labels and scores per image.")
    CATEGORY = CATEGORY
    FUNCTION = "classify"
    RETURN_TYPES = ("STRING", "FLOAT", "STRING")
    RETURN_NAMES = ("labels", "scores", "json")
    OUTPUT_IS_LIST = (True, True, False)
    OUTPUT_TOOLTIPS = (
        "Best label per image (a list, one per image; empty when below the threshold).",
        "Score (softmax probability) of that label per image (a list).",
        'JSON list, one entry per image: {"image": i, "labels": [...], "scores": [...]}, best first.',
    )
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "classifier": ("KUBIK_CLASSIFIER", {"tooltip": "From Kubik Load Classifier."}),
            "image": ("IMAGE", {"tooltip": "Images to classify (a batch is classified image by image)."}),
            "top_k": ("INT", {"default": 5, "min": 1, "max": 100,
                              "tooltip": "How many labels to report per image."}),
            "threshold": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                    "tooltip": "Drop labels whose score is below this (0 keeps all top-k)."}),
            "smart_crop": (SMART_CROP_CHOICES, {
                "default": "as trained",
                "tooltip": "Crop to the salient object first: 'as trained' follows the model card."}),
        }}

    def classify(self, classifier, image, top_k, threshold, smart_crop):
        if not isinstance(classifier, comfy_bridge.ManagedModel):
            raise ValueError("classifier: connect the output of Kubik Load Classifier")
        images = _to_pil_list(image)
        crop = None if smart_crop == "as trained" else smart_crop == "on"
        model = _ready(classifier)
        bar = comfy_bridge.progress_bar(len(images))
        predictions = []
        for start in range(0, len(images), _BATCH):
            comfy_bridge.check_interrupt()
            chunk = images[start:start + _BATCH]
            predictions += model.predict(chunk, top_k=top_k, threshold=threshold, smart_crop=crop)
            bar.update(len(chunk))
        labels = [p.labels[0] if p.labels else "" for p in predictions]
        scores = [float(p.scores[0]) if p.scores else 0.0 for p in predictions]
        table = [{"image": i, **p.to_dict()} for i, p in enumerate(predictions)]
        text = "\n".join(f"{i}: " + (", ".join(f"{l} {s:.3f}" for l, s in zip(p.labels, p.scores))
                                     or "(nothing above threshold)")
                         for i, p in enumerate(predictions))
        return {"ui": {"text": [text]}, "result": (labels, scores, json.dumps(table))}


class KubikSmartCrop:
    DESCRIPTION = ("Crops each image to its most salient object (spectral-residual saliency) at the "
                   "aspect ratio of width x height, then resizes to that size; plain images fall "
                   "back to a centre crop.")
    CATEGORY = CATEGORY
    FUNCTION = "crop"
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("image", "crop_boxes")
    OUTPUT_TOOLTIPS = (
        "The crops, resized to width x height (one batch).",
        'JSON list per image: {"left", "top", "right", "bottom", "method"} in source pixels; '
        'method is "saliency" or "center".',
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "Images to crop."}),
            "width": ("INT", {"default": 512, "min": 8, "max": 8192, "step": 8,
                              "tooltip": "Output width; with height it sets the crop's aspect ratio."}),
            "height": ("INT", {"default": 512, "min": 8, "max": 8192, "step": 8,
                               "tooltip": "Output height; with width it sets the crop's aspect ratio."}),
            "margin": ("FLOAT", {"default": 0.15, "min": 0.0, "max": 1.0, "step": 0.01,
                                 "tooltip": "Context kept around the object, as a share of its size."}),
        }}

    def crop(self, image, width, height, margin):
        import torch
        import torch.nn.functional as F

        from ..kubik_core.classify.smartcrop import find_crop

        pil_images = _to_pil_list(image)
        bar = comfy_bridge.progress_bar(len(pil_images))
        crops, boxes = [], []
        for frame, pil in zip(image, pil_images):
            box = find_crop(pil, aspect=width / height, margin=margin)
            region = frame[box.top:box.bottom, box.left:box.right, :3].float().permute(2, 0, 1)[None]
            if region.shape[1] == 1:  # greyscale IMAGE: keep ComfyUI's 3-channel layout
                region = region.expand(-1, 3, -1, -1)
            resized = F.interpolate(region, size=(height, width), mode="bicubic", antialias=True,
                                    align_corners=False)
            crops.append(resized[0].permute(1, 2, 0).clamp(0, 1))
            boxes.append({"left": box.left, "top": box.top, "right": box.right, "bottom": box.bottom,
                          "method": box.method})
            bar.update(1)
        return (torch.stack(crops), json.dumps(boxes))


NODE_CLASS_MAPPINGS = {
    "KubikLoadClassifier": KubikLoadClassifier,
    "KubikClassifyImage": KubikClassifyImage,
    "KubikSmartCrop": KubikSmartCrop,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "KubikLoadClassifier": "Kubik Load Classifier",
    "KubikClassifyImage": "Kubik Classify Image",
    "KubikSmartCrop": "Kubik Smart Crop",
}
