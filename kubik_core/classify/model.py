"""timm models for classification: building, local pretrained weights, export and loading.

An exported classifier is one ``.safetensors`` file whose metadata carries a JSON model card
(architecture, timm keyword arguments, input size, normalisation, interpolation, class names and
their fingerprint), plus the same JSON next to it (``<name>.json``) for people and other tools.
The file alone is enough to rebuild the model: loading never guesses a class order or a mean/std.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .classmap import ClassMap, write_bytes_atomic, write_text_atomic

FORMAT = "kubik-classifier"
FORMAT_VERSION = 1
METADATA_KEY = "kubik_classifier"


@dataclass
class ModelCard:
    architecture: str
    classes: list[str]
    input_size: list[int]                   # [C, H, W]
    mean: list[float]
    std: list[float]
    interpolation: str = "bicubic"
    crop_pct: float = 1.0
    model_kwargs: dict = field(default_factory=dict)
    smart_crop: bool = False                # the model was trained on smart-cropped images
    classes_sha256: str = ""
    format: str = FORMAT
    version: int = FORMAT_VERSION

    def __post_init__(self):
        self.classes_sha256 = self.class_map.fingerprint

    @property
    def class_map(self) -> ClassMap:
        return ClassMap(tuple(self.classes))

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, where: str) -> "ModelCard":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: model card is not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{where}: not a KubikAI classifier (missing '{FORMAT}' model card)")
        if data.get("version", 0) > FORMAT_VERSION:
            raise ValueError(f"{where}: classifier format v{data['version']} is newer than this "
                             f"KubikAI (v{FORMAT_VERSION}); update KubikAI")
        expected = data.get("classes_sha256")
        known = {f for f in cls.__dataclass_fields__}
        card = cls(**{k: v for k, v in data.items() if k in known})
        if expected and expected != card.classes_sha256:
            raise ValueError(f"{where}: class list does not match its fingerprint (damaged file)")
        return card


def build_model(architecture: str, num_classes: int, model_kwargs: dict | None = None,
                pretrained_file: str | os.PathLike | None = None, drop_path: float | None = None,
                drop_rate: float | None = None) -> torch.nn.Module:
    """A timm model; pretrained weights only from a local file (never the hub).

    With ``pretrained_file`` timm loads the file through its pretrained-config machinery, which
    re-initialises the classifier head when the class count differs (fine-tuning).
    """
    import timm

    if not timm.is_model(architecture):
        close = timm.list_models(f"*{architecture.split('_')[0]}*")[:8]
        raise ValueError(f"unknown timm architecture {architecture!r}"
                         + (f" (similar: {', '.join(close)})" if close else ""))
    kwargs = dict(model_kwargs or {})
    if drop_path:
        kwargs["drop_path_rate"] = drop_path
    if drop_rate:
        kwargs["drop_rate"] = drop_rate
    if pretrained_file is not None:
        path = Path(pretrained_file)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights not found: {path}")
        return timm.create_model(architecture, pretrained=True, num_classes=num_classes,
                                 pretrained_cfg_overlay=dict(file=str(path), hf_hub_id=None, url=None),
                                 **kwargs)
    return timm.create_model(architecture, pretrained=False, num_classes=num_classes, **kwargs)


def default_data_config(model: torch.nn.Module, img_size: int | None = None) -> dict:
    """input_size/mean/std/interpolation/crop_pct from the model's timm config, size overridable."""
    import timm.data

    config = timm.data.resolve_data_config({}, model=model)
    if img_size:
        config["input_size"] = (config["input_size"][0], img_size, img_size)
    return {"input_size": list(config["input_size"]), "mean": [float(v) for v in config["mean"]],
            "std": [float(v) for v in config["std"]], "interpolation": config["interpolation"],
            "crop_pct": float(config["crop_pct"]) if img_size is None else 1.0}


def export_classifier(state_dict: dict[str, torch.Tensor], card: ModelCard,
                      path: str | os.PathLike) -> Path:
    """Write ``path`` (.safetensors with the card in its metadata) and ``path`` .json, atomically."""
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"exported classifiers are .safetensors files, got {path.name}")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    write_bytes_atomic(path, save(tensors, metadata={METADATA_KEY: card.to_json()}))
    write_text_atomic(path.with_suffix(".json"), json.dumps(json.loads(card.to_json()), indent=1,
                                                            ensure_ascii=False) + "\n")
    return path


def read_card(path: str | os.PathLike) -> ModelCard:
    """The model card of an exported classifier (embedded metadata, else the JSON beside it)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"classifier not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    if METADATA_KEY in metadata:
        return ModelCard.from_json(metadata[METADATA_KEY], str(path))
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        return ModelCard.from_json(sidecar.read_text(encoding="utf-8"), str(sidecar))
    raise ValueError(f"{path}: no KubikAI model card (neither in the file nor in {sidecar.name})")


def load_classifier_model(path: str | os.PathLike, device: str | torch.device = "cpu",
                          dtype: torch.dtype = torch.float32) -> tuple[torch.nn.Module, ModelCard]:
    """Rebuild the timm model of an exported classifier and load its weights (strict)."""
    from safetensors.torch import load_file

    card = read_card(path)
    model = build_model(card.architecture, len(card.classes), card.model_kwargs)
    state = load_file(str(path))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit {card.architecture} with "
                         f"{len(card.classes)} classes ({str(exc).splitlines()[0]})") from None
    return model.to(device=device, dtype=dtype).eval(), card
