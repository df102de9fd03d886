"""timm models for classification: building, local pretrained weights, export and loading.

An exported classifier is one ``.safetensors`` file whose metadata carries a JSON model card
(architecture, timm keyword arguments, input size, normalisation, interpolation, class names and
their fingerprint), plus the same JSON next to it (``<name>.json``) for people and other tools.
The file alone is enough to rebuild the model: loading never guesses a class order or a mean/std.

A classifier file may come from anyone, so loading checks its card against a bounded schema
(``schema``), builds the model on the meta device and compares it with the tensors the file
declares before allocating anything (``common.weights.build_checked``), and refuses weights that
hold NaN or infinite values.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..common.atomic import write_bytes_atomic, write_text_atomic
from ..common.safetensors_file import open_safetensors
from ..common.weights import build_checked
from .classmap import ClassMap
from .schema import (FORMAT, FORMAT_VERSION, MAX_CARD_BYTES, MAX_CLASSES, CardError,
                     check_architecture, check_model_kwargs, parse_card)

METADATA_KEY = "kubik_classifier"
# Buffers that are not saved in the file (position indices, attention masks) are allocated on
# load too; a card may not ask for more than this many of their values (1 GB as float32).
MAX_UNSAVED_BUFFER_VALUES = 256 * 1024 * 1024


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
    def from_json(cls, text: str | bytes, where: str) -> "ModelCard":
        """Parse a card written by anyone: the bounded schema, then the class fingerprint."""
        try:
            fields = parse_card(text)
        except CardError as exc:
            raise CardError(f"{where}: {exc}") from None
        expected = fields.get("classes_sha256")
        card = cls(**fields)
        if expected and expected != card.classes_sha256:
            raise CardError(f"{where}: class list does not match its fingerprint (damaged file)")
        return card

    def check(self, where: str) -> None:
        """Raise CardError unless this card (built in code) would load again: the same schema."""
        self.from_json(self.to_json(), where)


def build_model(architecture: str, num_classes: int, model_kwargs: dict | None = None,
                pretrained_file: str | os.PathLike | None = None, drop_path: float | None = None,
                drop_rate: float | None = None) -> torch.nn.Module:
    """A timm model; pretrained weights only from a local file (never the hub).

    ``architecture`` and ``model_kwargs`` are checked against the card schema first, so nothing
    here can reach the network or other files. With ``pretrained_file`` the weights are read
    here (safetensors, or ``torch.load(weights_only=True)``) and handed to timm as a state dict:
    timm re-initialises the classifier head when the class count differs (fine-tuning) and adapts
    position embeddings to another ``img_size``.
    """
    import timm

    check_architecture(architecture)
    kwargs = check_model_kwargs(model_kwargs or {})
    if not isinstance(num_classes, int) or not 1 <= num_classes <= MAX_CLASSES:
        raise CardError(f"a classifier needs 1 to {MAX_CLASSES} classes, got {num_classes}")
    if drop_path:
        kwargs["drop_path_rate"] = drop_path
    if drop_rate:
        kwargs["drop_rate"] = drop_rate
    options = dict(pretrained=False)
    if pretrained_file is not None:
        state = read_pretrained(pretrained_file)
        options = dict(pretrained=True, pretrained_cfg_overlay=dict(
            state_dict=state, source=None, file=None, url=None, hf_hub_id=None, custom_load=False))
    try:
        return timm.create_model(architecture, num_classes=num_classes, **options, **kwargs)
    except RuntimeError as exc:  # load_state_dict: the pretrained tensors do not fit
        if pretrained_file is None:
            raise
        raise ValueError(f"--pretrained {Path(pretrained_file).name}: its weights do not fit "
                         f"{architecture} with these model kwargs ({_one_line(exc)})") from None
    except (TypeError, ValueError, AssertionError, KeyError, IndexError) as exc:
        raise CardError(f"model_kwargs {json.dumps(kwargs)} do not fit {architecture} "
                        f"({_one_line(exc)})") from None


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (torch's load errors span many), cut to ``limit``."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def read_pretrained(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A local weights file as a state dict: .safetensors, or a torch checkpoint loaded with
    ``weights_only=True`` (timm's unwrapping of ``state_dict`` / ``model`` / EMA entries)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    if path.is_dir():
        raise ValueError(f"--pretrained {path}: is a folder, not a weights file")
    if not path.is_file():
        raise ValueError(f"--pretrained {path}: not a regular file (a device, pipe or socket)")
    from timm.models import load_state_dict

    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles; the error says it all
            warnings.simplefilter("ignore")
            state = load_state_dict(str(path), weights_only=True)
    except Exception as exc:  # safetensors and unpickling raise many types for foreign bytes
        raise ValueError(f"--pretrained {path.name}: not a weights file (.safetensors, or a "
                         f".pth/.pt state dict) ({type(exc).__name__}: {_one_line(exc)})") from None
    if (not isinstance(state, dict) or not state
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise ValueError(f"--pretrained {path.name}: holds no state dict of named tensors")
    return state


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
    card.check(path.name)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    write_bytes_atomic(path, save(tensors, metadata={METADATA_KEY: card.to_json()}))
    write_text_atomic(path.with_suffix(".json"), json.dumps(json.loads(card.to_json()), indent=1,
                                                            ensure_ascii=False) + "\n")
    return path


def read_card(path: str | os.PathLike, name: str | None = None) -> ModelCard:
    """The model card of an exported classifier (embedded metadata, else the JSON beside it).

    ``name`` is how errors call the file (the node passes the name relative to its model
    folder, so no server path reaches the user); by default the path as given.
    """
    path = Path(path)
    name = name or str(path)
    if not path.exists():
        raise FileNotFoundError(f"classifier not found: {name}")
    if path.is_dir():
        raise ValueError(f"{name}: is a folder, not a classifier file (.safetensors)")
    if not path.is_file():
        raise ValueError(f"{name}: not a regular file (a device, pipe or socket)")
    with open_safetensors(path, name) as handle:
        metadata = handle.metadata() or {}
    if METADATA_KEY in metadata:
        return ModelCard.from_json(metadata[METADATA_KEY], name)
    sidecar = path.with_suffix(".json")
    sidecar_name = str(Path(name).with_suffix(".json"))
    if sidecar.is_file():
        if sidecar.stat().st_size > MAX_CARD_BYTES:
            raise CardError(f"{sidecar_name}: model card of {sidecar.stat().st_size} bytes is too "
                            f"large (limit {MAX_CARD_BYTES})")
        return ModelCard.from_json(sidecar.read_bytes(), sidecar_name)
    raise ValueError(f"{name}: no KubikAI model card (neither in the file nor in {sidecar.name})")


def _check_unsaved_buffers(build, name: str) -> None:
    """Refuse a card whose model allocates huge buffers that the file does not hold."""
    with torch.device("meta"):
        probe = build()
    saved = set(probe.state_dict())
    unsaved = sum(buffer.numel() for key, buffer in probe.named_buffers() if key not in saved)
    if unsaved > MAX_UNSAVED_BUFFER_VALUES:
        raise CardError(f"{name}: its model card asks for {unsaved:,} values of working buffers "
                        f"(limit {MAX_UNSAVED_BUFFER_VALUES:,}); the card was altered or is not "
                        "for this KubikAI")


def load_classifier_model(path: str | os.PathLike, device: str | torch.device = "cpu",
                          dtype: torch.dtype = torch.float32, name: str | None = None
                          ) -> tuple[torch.nn.Module, ModelCard]:
    """Rebuild the timm model of an exported classifier and load its weights (strict).

    The model is first built on the meta device and compared with the file's header, so a card
    cannot make this allocate more than the file holds. ``name``: as in ``read_card``.
    """
    from safetensors.torch import load_file

    name = name or str(path)
    card = read_card(path, name)

    def build():
        try:
            return build_model(card.architecture, len(card.classes), card.model_kwargs)
        except CardError as exc:
            raise CardError(f"{name}: {exc}") from None

    _check_unsaved_buffers(build, name)
    model = build_checked(build, path, f"{name} ({card.architecture}, {len(card.classes)} classes)")
    state = load_file(str(path))
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"{name}: tensor {key} holds NaN or infinite values (a damaged or "
                             "diverged model); export it again from a good checkpoint")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{name}: weights do not fit {card.architecture} with "
                         f"{len(card.classes)} classes ({_one_line(exc)})") from None
    return model.to(device=device, dtype=dtype).eval(), card
