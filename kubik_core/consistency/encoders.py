"""Image encoders for consistency scoring: picture -> unit vector.

DreamBooth measures subject fidelity with the cosine similarity of DINO (ViT CLS token) and CLIP
image embeddings ("DINO" and "CLIP-I"); these are the two user-facing backends here, built with
transformers from a local folder (``config.json`` + ``model.safetensors``, as ``save_pretrained``
writes them and as Hugging Face hosts them). Nothing is downloaded: the config is read by us
(bounded JSON, bounded sizes), the model is sized on the meta device and compared with the
file's header before anything is allocated, then transformers loads the file offline (it also
renames the keys of older files to its current layout).

Any other embedding (ComfyUI's CLIP_VISION model inside the node, a test's own features) plugs in
through ``FunctionEncoder``: a function from a list of square RGB crops to an [N, D] array.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..common.model_config import (ConfigFileError, load_config_file, loaded_but_missing, quiet_transformers,
                                   size_problem)
from ..common.weights import WeightsFileError, parameter_count, tensor_shapes
from .errors import ConsistencyError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PREPROCESSOR_NAME = "preprocessor_config.json"
MAX_CONFIG_BYTES = 1024 * 1024

# OpenAI CLIP's normalisation, and ImageNet's (DINOv2), as their image processors use them.
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DINO_DEFAULT_SIZE = 224  # DINOv2's processor crops to 224 whatever size its position table has

# Upper bounds on the config's sizes: far above the largest released CLIP / DINOv2 (giant:
# 40 layers, 1536 wide), low enough that a crafted config cannot make even the meta build hang.
_LIMITS = {"num_hidden_layers": 128, "hidden_size": 16384, "intermediate_size": 65536,
           "num_attention_heads": 512, "image_size": 4096, "patch_size": 512, "projection_dim": 16384,
           "num_channels": 4}


class ImageEncoder(ABC):
    """Square RGB crops -> L2-normalised embeddings [N, D] (float32, CPU)."""

    name: str = "encoder"

    @abstractmethod
    def embed(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """One unit vector per picture, in order."""


def _normalise(vectors, what: str) -> torch.Tensor:
    vectors = torch.as_tensor(np.asarray(vectors, dtype=np.float32) if not isinstance(vectors, torch.Tensor)
                              else vectors.detach()).float().cpu()
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise ConsistencyError(f"{what} gave embeddings of shape {tuple(vectors.shape)}, expected [N, D]")
    if not torch.isfinite(vectors).all():
        raise ConsistencyError(f"{what} gave NaN or infinite embeddings; the model's weights are damaged "
                               "or it runs in a precision too low for them")
    norms = vectors.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise ConsistencyError(f"{what} gave an all-zero embedding; use another encoder")
    return vectors / norms


class FunctionEncoder(ImageEncoder):
    """Any function ``crops -> [N, D] vectors`` as an encoder (ComfyUI's CLIP_VISION, tests)."""

    def __init__(self, function: Callable[[list[Image.Image]], object], name: str, batch_size: int = 16):
        self.function = function
        self.name = name
        self.batch_size = batch_size

    def embed(self, images: Sequence[Image.Image]) -> torch.Tensor:
        chunks = [_normalise(self.function(list(images[i:i + self.batch_size])), self.name)
                  for i in range(0, len(images), self.batch_size)]
        return torch.cat(chunks)


@dataclass(frozen=True)
class Preprocessing:
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class TransformersEncoder(ImageEncoder):
    """A transformers CLIPVisionModelWithProjection (embedding: ``image_embeds``) or Dinov2Model
    (embedding: the CLS token after the last layer norm, ``pooler_output``)."""

    def __init__(self, model: torch.nn.Module, kind: str, preprocessing: Preprocessing, name: str,
                 device: torch.device, batch_size: int = 16):
        self.model = model.eval()
        self.kind = kind
        self.preprocessing = preprocessing
        self.name = name
        self.device = device
        self.batch_size = batch_size

    def _pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        p = self.preprocessing
        arrays = [np.asarray(image.convert("RGB").resize((p.size, p.size), Image.Resampling.BICUBIC),
                             dtype=np.float32) / 255.0 for image in images]
        pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        mean, std = torch.tensor(p.mean).view(1, 3, 1, 1), torch.tensor(p.std).view(1, 3, 1, 1)
        return (pixels - mean) / std

    @torch.no_grad()
    def embed(self, images: Sequence[Image.Image]) -> torch.Tensor:
        chunks = []
        for start in range(0, len(images), self.batch_size):
            pixels = self._pixels(images[start:start + self.batch_size]).to(self.device)
            output = self.model(pixel_values=pixels)
            vectors = output.image_embeds if self.kind == "clip" else output.pooler_output
            chunks.append(_normalise(vectors, self.name))
        return torch.cat(chunks)


def _read_json(path: Path, what: str) -> dict:
    try:
        return load_config_file(path, MAX_CONFIG_BYTES)
    except ConfigFileError as exc:
        raise ConsistencyError(f"{what}: {exc}") from None


def _check_sizes(config: dict, what: str) -> None:
    problem = size_problem(config, _LIMITS, "config.json ")
    if problem:
        raise ConsistencyError(f"{what}: {problem}")


def encoder_folder(path: str | os.PathLike) -> Path:
    """The folder of an encoder named by the folder or by its model.safetensors."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.name == WEIGHTS_NAME:
        return path.parent
    if path.exists():
        raise ConsistencyError(f"{path.name}: not an encoder; give a folder holding config.json and "
                               "model.safetensors (the transformers layout), or that model.safetensors")
    raise ConsistencyError(f"{path.name}: no such encoder folder or file")


def _build(config: dict, what: str):
    """(builder, model class, kind, settings, filter of the file's keys it loads) for a
    transformers config of a CLIP vision model, a whole CLIP, or a DINOv2."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, Dinov2Config, Dinov2Model

    model_type = config.get("model_type")
    if model_type == "clip":  # a whole CLIP (text and vision): its vision half
        vision = config.get("vision_config")
        if not isinstance(vision, dict):
            raise ConsistencyError(f"{what}: a CLIP config.json without a vision_config")
        vision = {**vision, "projection_dim": config.get("projection_dim", vision.get("projection_dim", 512))}
        config, model_type = vision, "clip_vision_model"
    if model_type == "clip_vision_model":
        _check_sizes(config, what)
        settings = CLIPVisionConfig.from_dict({k: v for k, v in config.items() if k != "model_type"})
        return (lambda: CLIPVisionModelWithProjection(settings)), CLIPVisionModelWithProjection, "clip", \
            settings, (lambda key: key.startswith(("vision_model.", "visual_projection.")))
    if model_type == "dinov2":
        _check_sizes(config, what)
        settings = Dinov2Config.from_dict({k: v for k, v in config.items() if k != "model_type"})
        return (lambda: Dinov2Model(settings)), Dinov2Model, "dino", settings, (lambda key: True)
    raise ConsistencyError(f"{what}: config.json model_type is {str(model_type)[:40]!r}; the encoders "
                           "are CLIP vision ('clip_vision_model' or 'clip') and DINOv2 ('dinov2')")


def _preprocessing(folder: Path, kind: str, settings, what: str) -> Preprocessing:
    mean, std = (CLIP_MEAN, CLIP_STD) if kind == "clip" else (IMAGENET_MEAN, IMAGENET_STD)
    size = settings.image_size if kind == "clip" else min(DINO_DEFAULT_SIZE, settings.image_size)
    if (folder / PREPROCESSOR_NAME).exists():
        processor = _read_json(folder / PREPROCESSOR_NAME, what)
        try:
            mean = tuple(float(v) for v in processor.get("image_mean", mean))
            std = tuple(float(v) for v in processor.get("image_std", std))
            crop = processor.get("crop_size", size)
            size = int(crop.get("height", size) if isinstance(crop, dict) else crop)
        except (TypeError, ValueError, AttributeError):
            raise ConsistencyError(f"{what}: {PREPROCESSOR_NAME} has unreadable image_mean, image_std "
                                   "or crop_size") from None
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0 or not 1 <= size <= _LIMITS["image_size"]:
            raise ConsistencyError(f"{what}: {PREPROCESSOR_NAME} needs 3 means, 3 positive stds and a "
                                   "crop size from 1 to 4096")
    if kind == "clip" and size != settings.image_size:
        size = settings.image_size  # CLIP's position table fixes its input size
    if kind == "dino":
        size = max(settings.patch_size, size - size % settings.patch_size)
    return Preprocessing(size, mean, std)


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu", batch_size: int = 16,
                 name: str | None = None) -> TransformersEncoder:
    """The CLIP vision or DINOv2 encoder in ``path`` (a folder, or its model.safetensors), offline.

    The model built from config.json must hold as many values as the file's tensors (checked on
    the meta device first, so a crafted config cannot allocate more than the file holds), and
    every weight must come from the file. Raises ConsistencyError with one line naming the file
    and what is wrong with it.
    """
    folder = encoder_folder(path)
    what = name or folder.name or str(path)
    config = _read_json(folder / CONFIG_NAME, what)
    try:
        build, model_class, kind, settings, wanted = _build(config, what)
        with torch.device("meta"):
            expected = sum(t.numel() for t in build().state_dict().values())
    except ConsistencyError:
        raise
    except Exception as exc:  # transformers refusing a value (a wrong type, heads not dividing width)
        raise ConsistencyError(f"{what}: config.json does not describe a valid model "
                               f"({' '.join(str(exc).split())[:200]})") from None
    weights = folder / WEIGHTS_NAME
    if not weights.exists():
        raise ConsistencyError(f"{what}: {WEIGHTS_NAME} is missing beside config.json")
    try:
        found = parameter_count({k: v for k, v in tensor_shapes(weights).items() if wanted(k)})
    except WeightsFileError as exc:
        raise ConsistencyError(str(exc)) from None
    if found != expected:
        raise ConsistencyError(f"{what}: {WEIGHTS_NAME} holds {found:,} weights for the model but config.json "
                               f"describes {expected:,}; the weights belong to another model")
    try:
        with quiet_transformers():
            model, info = model_class.from_pretrained(folder, config=settings, local_files_only=True,
                                                      use_safetensors=True, output_loading_info=True)
    except Exception as exc:  # a damaged file, a shape transformers refuses
        reason = " ".join(str(exc).replace(str(folder), what).split())[:200]  # no server paths
        raise ConsistencyError(f"{what}: cannot load {WEIGHTS_NAME} ({reason})") from None
    missing = loaded_but_missing(info)
    if missing:
        raise ConsistencyError(f"{what}: {WEIGHTS_NAME} lacks {len(missing)} weight(s) of the model its config "
                               f"describes (first: {missing[0]}); the weights belong to another model")
    device = torch.device(device)
    model = model.to(device=device, dtype=torch.float32)
    label = f"{'CLIP vision' if kind == 'clip' else 'DINOv2'} {what}"
    return TransformersEncoder(model, kind, _preprocessing(folder, kind, settings, what), label, device,
                               batch_size)
