"""The image-to-3D model as one object, and its file format.

A :class:`Kubik3DModel` holds the shape VAE and, for kind ``image-to-shape``, the image encoder
and the flow transformer, plus the statistics that normalise latents for the flow. It is what the
"Kubik Load 3D Model" node outputs.

File format: ``NAME.safetensors`` whose header metadata carries ``kubik3d_format`` (the format
version), ``kind`` and ``config`` (the JSON config it was built from: :meth:`.config.ModelConfig.to_dict`,
the same object as a ``configs/*.json`` file), so the file alone is enough; ``NAME.json`` beside it repeats that with the training info for people to read. Tensor
names: ``vae.*``, ``image_encoder.*``, ``flow.*``, ``latent_mean``, ``latent_std``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..storage import save_json_atomic, write_bytes_atomic
from .config import ModelConfig, load_config
from .vae import ShapeVAE

FORMAT_VERSION = "2"  # 2: latent tokens carry their anchor xyz (vae.POSITION_CHANNELS)
KINDS = ("vae", "image-to-shape")


class ModelFileError(ValueError):
    """A model file that cannot be used: missing, corrupt, not a KubikAI 3D model, wrong kind,
    or holding NaN/inf weights."""


class Kubik3DModel(nn.Module):
    def __init__(self, config: ModelConfig, kind: str = "image-to-shape", name: str = "untitled"):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r}; kinds: {', '.join(KINDS)}")
        self.config, self.kind, self.name = config, kind, name
        self.info: dict = {}
        self.vae = ShapeVAE(config.vae)
        channels = self.vae.token_channels
        self.register_buffer("latent_mean", torch.zeros(channels))
        self.register_buffer("latent_std", torch.ones(channels))
        self.image_encoder = self.flow = None
        if kind == "image-to-shape":
            from .flow import FlowTransformer
            from .image_encoder import ImageEncoder

            self.image_encoder = ImageEncoder(config.image_encoder)
            self.flow = FlowTransformer(config.flow, channels, self.image_encoder.width, self.vae.latent_tokens)

    @property
    def image_size(self) -> int:
        return self.config.image_encoder.image_size

    @property
    def device(self) -> torch.device:
        return self.latent_mean.device

    def describe(self) -> str:
        params = sum(p.numel() for p in self.parameters())
        return f"{self.name} ({self.kind}, config {'?' if self.config.name is None else self.config.name}, {params / 1e6:.1f} M parameters)"

    # Latents seen by the flow are standardised per channel with statistics of the encoded set.
    def normalize_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return (latents - self.latent_mean) / self.latent_std

    def denormalize_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return latents * self.latent_std + self.latent_mean


def build_model(config="tiny", kind: str = "image-to-shape", seed: int = 0, name: str | None = None) -> Kubik3DModel:
    """A randomly initialised model (seeded) from a config name, path, dict or :class:`ModelConfig`."""
    config = load_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Kubik3DModel(config, kind, name or f"{'custom' if config.name is None else config.name}-{kind}")


def save_model(model: Kubik3DModel, path: str | Path, info: dict | None = None,
               dtype: torch.dtype = torch.float32) -> Path:
    """Write ``path`` (.safetensors) and its JSON twin atomically. ``dtype=torch.float16`` halves
    the file (the shipped demo model); loading always gives float32 weights."""
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"model files end in .safetensors, not {path.name!r}")
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    model.info = dict(info or model.info)
    metadata = {"kubik3d_format": FORMAT_VERSION, "kind": model.kind, "name": path.stem,
                "config": json.dumps(model.config.to_dict()), "info": json.dumps(model.info)}
    write_bytes_atomic(path, save(state, metadata=metadata))
    save_json_atomic(path.with_suffix(".json"), {"format": FORMAT_VERSION, "kind": model.kind,
                                                 "config": model.config.to_dict(), "info": model.info})
    return path


def read_header(path: str | Path, name: str | None = None) -> dict:
    """The metadata of a model file, checked to be a KubikAI 3D model. Errors call the file
    ``name`` (default: its file name), so that a node can name it as its user chose it."""
    from ...common.safetensors_file import SafetensorsFileError
    from ...common.safetensors_file import read_header as read_safetensors_header

    path = Path(path)
    shown = name or path.name
    if not path.is_file():
        raise ModelFileError(f"model file {name or path} does not exist")
    try:
        header = read_safetensors_header(path, shown)
    except SafetensorsFileError as exc:  # the shared bounded reader names the problem
        raise ModelFileError(f"{shown} is not a readable safetensors file: {exc.reason}") from None
    metadata = header.metadata
    if "kubik3d_format" not in metadata:
        tensors = list(header.tensors)
        hint = f" (its first tensor is {tensors[0]!r})" if tensors else ""
        raise ModelFileError(f"{shown} is not a KubikAI 3D model: its header has no kubik3d_format "
                             f"entry{hint}; choose a file written by `kubik 3d train-vae` or `train-flow`")
    if metadata["kubik3d_format"] != FORMAT_VERSION:
        raise ModelFileError(f"{shown} is a KubikAI 3D model of format {metadata['kubik3d_format'][:20]}, this "
                             f"KubikAI reads format {FORMAT_VERSION} (format 2 changed the latent: each token "
                             "carries its anchor position); retrain it with `kubik 3d train-vae` / `train-flow`")
    if metadata.get("kind") not in KINDS:
        raise ModelFileError(f"{shown} has unknown model kind {str(metadata.get('kind'))[:40]!r}; kinds: "
                             f"{', '.join(KINDS)}")
    return metadata


def load_model(path: str | Path, device="cpu", kind: str | None = None, name: str | None = None) -> Kubik3DModel:
    """Load a model file; ``kind`` demands one kind ("image-to-shape" for image input); errors
    call the file ``name`` (default: its file name).

    The file's own config is checked against the schema (:mod:`.config`), the model is
    built on the meta device and compared with the tensors the file's header declares, and only a
    model that matches is built for real: a crafted config cannot make this allocate more than
    the file holds, nor name any other file."""
    from safetensors.torch import load_file

    from ...common.bounded_json import loads as bounded_loads
    from ...common.weights import WeightsFileError, build_checked
    from .config import parse_config_json

    path = Path(path)
    shown = name or path.name
    metadata = read_header(path, shown)
    if kind is not None and metadata["kind"] != kind:
        raise ModelFileError(f"{shown} is a {metadata['kind']!r} model, but a {kind!r} model is needed "
                             "(a VAE-only file cannot read images; use a file written by `kubik 3d train-flow`)")
    try:
        config = parse_config_json(metadata.get("config", ""), "its config")
        info = bounded_loads(metadata.get("info", "{}"), max_depth=16, max_bytes=1 << 20)
        if not isinstance(info, dict):
            raise ValueError(f"its info must be a JSON object, not {type(info).__name__}")
        model = build_checked(lambda: Kubik3DModel(config, metadata["kind"], path.stem), path, shown)
        state = load_file(str(path))
    except WeightsFileError as exc:
        raise ModelFileError(f"{exc}; the file is damaged or was edited after training: use a model file "
                             "written by `kubik 3d train-vae` / `train-flow`") from None
    except ValueError as exc:  # the schema, bounded JSON, building
        raise ModelFileError(f"{shown}: {exc}; use a model file written by `kubik 3d train-vae` / "
                             "`train-flow`") from None
    except Exception as exc:  # safetensors' own error types for truncated data
        raise ModelFileError(f"{shown} is corrupt: {exc}") from None
    model.info = info
    bad = sorted(k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all())
    if bad:
        raise ModelFileError(f"{shown} holds NaN or infinite weights in {len(bad)} tensor(s) "
                             f"(first: {bad[0]}); the training run diverged - use an earlier checkpoint")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state)
    return model.to(device).eval()
