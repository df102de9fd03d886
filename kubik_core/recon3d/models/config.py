"""Model and training configs for the image-to-3D model: data (JSON), not code, checked against a schema.

``load_config("tiny")`` reads ``configs/tiny.json`` beside this file; a path to any JSON file with
the same sections works too. Sections: ``vae``, ``image_encoder``, ``flow`` (architecture),
``train_vae``, ``train_flow`` (optimisation), ``sampling`` (inference defaults). A checkpoint's
JSON carries the config it was trained with, so a model file is self-describing.

In code a config is a :class:`ModelConfig` of frozen, typed sections (:class:`VAEConfig`,
:class:`ImageEncoderConfig`, :class:`FlowConfig`, :class:`TrainVAEConfig`, :class:`TrainFlowConfig`,
:class:`SamplingConfig`): each network takes its own section (``ShapeVAE(config.vae)``) and reads
``config.vae.heads``, not ``config["vae"]["heads"]``. :data:`SCHEMA` stays the one statement of
what a value may be; the dataclasses add only names, types and the defaults of optional keys (a
test holds the two together), and ``to_dict`` writes the same JSON object a file held, in the
schema's key order, so model files keep their format.

Whoever wrote a model file wrote its config, so every config is checked against :data:`SCHEMA`
before anything is built: only known keys, each of its type and within its range (a 388-byte
config must not ask for a model of 50 GB or a million layers), and no value that names a file, a
folder or a network location. ``image_encoder.pretrained_file`` is kept only as a record in older
files: it is never read (pretrained backbone weights come from ``train-flow
--image-encoder-weights``), and the backbone must be one of timm's built-in architecture names
(``hf-hub:...`` names would fetch a config from the network).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ...common.bounded_json import BoundedJSONError
from ...common.bounded_json import loads as bounded_loads

CONFIG_DIR = Path(__file__).with_name("configs")
SECTIONS = ("vae", "image_encoder", "flow", "train_vae", "train_flow", "sampling")
MAX_CONFIG_BYTES = 64 * 1024
_BACKBONE_NAME = re.compile(r"[A-Za-z0-9_.]{1,100}")


@dataclass(frozen=True)
class Field:
    """One config value: its type (int, float, bool, str or dict), range or choices, and whether
    it may be left out (or be null)."""

    kind: type
    low: float | None = None
    high: float | None = None
    required: bool = True
    nullable: bool = False
    choices: tuple = ()
    max_length: int = 200


def _int(low: int, high: int, required: bool = True) -> Field:
    return Field(int, low, high, required)


def _float(low: float, high: float, required: bool = True) -> Field:
    return Field(float, low, high, required)


_WEIGHT = _float(0.0, 1000.0)
_EMA = _float(0.0, 0.999999, required=False)     # 0: no EMA
_STEPS = _int(1, 1_000_000_000)
_LR = _float(1e-12, 1.0)
SAMPLERS = ("euler", "heun")
"""The integrators of :mod:`kubik_core.recon3d.sampler`; ``sampling.sampler`` names one of them."""

SCHEMA: dict[str, dict[str, Field]] = {
    "vae": {
        "input_points": _int(16, 1 << 20), "latent_tokens": _int(1, 16384), "latent_channels": _int(1, 1024),
        "width": _int(8, 8192), "heads": _int(1, 128), "encoder_layers": _int(0, 64),
        "decoder_layers": _int(0, 64), "fourier_frequencies": _int(1, 32), "sdf_clip": _float(1e-6, 10.0),
        "query_field_layers": _int(0, 16, required=False), "query_residual": Field(bool, required=False),
    },
    "image_encoder": {
        "backbone": Field(str, max_length=100), "backbone_kwargs": Field(dict, required=False),
        "image_size": _int(8, 1024),
        "pretrained_file": Field(str, required=False, nullable=True, max_length=4096),  # a record, never read
    },
    "flow": {"width": _int(8, 8192), "depth": _int(1, 64), "heads": _int(1, 128), "mlp_ratio": _float(0.25, 16.0)},
    "train_vae": {
        "steps": _STEPS, "batch_size": _int(1, 65536), "query_points": _int(1, 1 << 22), "lr": _LR,
        "warmup_steps": _int(0, 1_000_000_000), "weight_decay": _float(0.0, 10.0), "kl_weight": _WEIGHT,
        "surface_weight": _WEIGHT, "uniform_weight": _WEIGHT, "eikonal_weight": _float(0.0, 1000.0, False),
        "sign_weight": _float(0.0, 1000.0, False), "sign_temperature": _float(1e-6, 10.0, False), "ema_decay": _EMA,
    },
    "train_flow": {
        "steps": _STEPS, "batch_size": _int(1, 65536), "lr": _LR, "warmup_steps": _int(0, 1_000_000_000),
        "weight_decay": _float(0.0, 10.0), "condition_dropout": _float(0.0, 1.0), "ema_decay": _EMA,
    },
    "sampling": {"steps": _int(1, 1000), "cfg": _float(0.0, 100.0), "sampler": Field(str, choices=SAMPLERS)},
}
TOP_LEVEL = {"name": Field(str, required=False), "description": Field(str, required=False, max_length=2000)}
# The timm keyword arguments a config may pass to its backbone: architecture sizes only (never
# checkpoint_path, pretrained_cfg, cache_dir or anything else that reaches files or the network).
BACKBONE_KWARGS: dict[str, Field] = {
    "img_size": _int(8, 1024, False), "patch_size": _int(1, 64, False), "depth": _int(1, 64, False),
    "embed_dim": _int(8, 8192, False), "num_heads": _int(1, 128, False), "mlp_ratio": _float(0.25, 16.0, False),
    "qkv_bias": Field(bool, required=False), "class_token": Field(bool, required=False),
    "reg_tokens": _int(0, 64, False), "drop_rate": _float(0.0, 1.0, False), "drop_path_rate": _float(0.0, 1.0, False),
}


class ConfigError(ValueError):
    """A config that breaks the schema; the message names the key (``section.key``) and the rule."""


class ConfigSection:
    """What the typed sections share: made from a dict that meets the schema, written back as one.

    A section made in code (``dataclasses.replace(config.train_vae, steps=10)``) meets the same
    schema as one read from a file: ``__post_init__`` checks it."""

    fields_schema: ClassVar[dict[str, Field]]
    path: ClassVar[str]  # where the section sits in a config, for error messages: "vae", "image_encoder..."

    def __post_init__(self) -> None:
        _check_keys(self.to_dict(), self.fields_schema, _prefix(self.path), type(self).__name__)

    @classmethod
    def from_dict(cls, values, what: str = "model config"):
        """The section from JSON data; ConfigError naming the first key at fault."""
        _check_keys(values, cls.fields_schema, _prefix(cls.path), what)
        return cls._from_checked(values)

    @classmethod
    def _from_checked(cls, values: dict):
        return cls(**values)

    def to_dict(self) -> dict:
        """The JSON object of this section, keys in the schema's order; optional keys left out
        (None) stay out."""
        out = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if value is None and not self.fields_schema[item.name].nullable:
                continue
            out[item.name] = value.to_dict() if isinstance(value, ConfigSection) else value
        return out


def _prefix(path: str) -> str:
    return f"{path}." if path else ""


@dataclass(frozen=True, kw_only=True)
class VAEConfig(ConfigSection):
    """``vae``: the shape VAE (:class:`.vae.ShapeVAE`)."""

    fields_schema: ClassVar = SCHEMA["vae"]
    path: ClassVar = "vae"
    input_points: int          # surface points the encoder reads per shape
    latent_tokens: int         # tokens per shape, each anchored at a surface point
    latent_channels: int       # KL-regularised features per token (the anchor's xyz comes on top)
    width: int
    heads: int
    encoder_layers: int
    decoder_layers: int
    fourier_frequencies: int
    sdf_clip: float            # training compares signed distances clipped to +-sdf_clip
    query_field_layers: int = 2
    query_residual: bool = True


@dataclass(frozen=True, kw_only=True)
class BackboneKwargs(ConfigSection):
    """``image_encoder.backbone_kwargs``: the timm architecture sizes a config may set (None: timm's
    default); never anything that reaches files or the network."""

    fields_schema: ClassVar = BACKBONE_KWARGS
    path: ClassVar = "image_encoder.backbone_kwargs"
    img_size: int | None = None
    patch_size: int | None = None
    depth: int | None = None
    embed_dim: int | None = None
    num_heads: int | None = None
    mlp_ratio: float | None = None
    qkv_bias: bool | None = None
    class_token: bool | None = None
    reg_tokens: int | None = None
    drop_rate: float | None = None
    drop_path_rate: float | None = None


@dataclass(frozen=True, kw_only=True)
class ImageEncoderConfig(ConfigSection):
    """``image_encoder``: the timm backbone the flow reads images with (:class:`.image_encoder.ImageEncoder`)."""

    fields_schema: ClassVar = SCHEMA["image_encoder"]
    path: ClassVar = "image_encoder"
    backbone: str              # one of timm's built-in architecture names
    backbone_kwargs: BackboneKwargs = dataclasses.field(default_factory=BackboneKwargs)
    image_size: int            # square input images, pixels
    pretrained_file: str | None = None   # a record in older files, never read

    @classmethod
    def _from_checked(cls, values: dict) -> "ImageEncoderConfig":
        kwargs = values.get("backbone_kwargs")
        return cls(**{**values, "backbone_kwargs": BackboneKwargs(**(kwargs or {}))})


@dataclass(frozen=True, kw_only=True)
class FlowConfig(ConfigSection):
    """``flow``: the rectified-flow transformer (:class:`.flow.FlowTransformer`)."""

    fields_schema: ClassVar = SCHEMA["flow"]
    path: ClassVar = "flow"
    width: int
    depth: int
    heads: int
    mlp_ratio: float


@dataclass(frozen=True, kw_only=True)
class TrainVAEConfig(ConfigSection):
    """``train_vae``: optimisation and loss weights of ``kubik 3d train-vae`` (:mod:`..train.vae`)."""

    fields_schema: ClassVar = SCHEMA["train_vae"]
    path: ClassVar = "train_vae"
    steps: int
    batch_size: int            # global: split across the processes of a torchrun job
    query_points: int          # SDF query points per shape and step
    lr: float
    warmup_steps: int
    weight_decay: float
    kl_weight: float
    surface_weight: float
    uniform_weight: float
    eikonal_weight: float = 0.0
    sign_weight: float = 0.0
    sign_temperature: float = 0.01
    ema_decay: float = 0.0     # 0: no EMA


@dataclass(frozen=True, kw_only=True)
class TrainFlowConfig(ConfigSection):
    """``train_flow``: optimisation of ``kubik 3d train-flow`` (:mod:`..train.flow`)."""

    fields_schema: ClassVar = SCHEMA["train_flow"]
    path: ClassVar = "train_flow"
    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    weight_decay: float
    condition_dropout: float   # share of samples trained without their image (for guidance)
    ema_decay: float = 0.0


@dataclass(frozen=True, kw_only=True)
class SamplingConfig(ConfigSection):
    """``sampling``: the defaults of :func:`kubik_core.recon3d.sampler.sample` for this model."""

    fields_schema: ClassVar = SCHEMA["sampling"]
    path: ClassVar = "sampling"
    steps: int
    cfg: float                 # classifier-free guidance scale; 1 = none
    sampler: str               # one of SAMPLERS


SECTION_TYPES: dict[str, type[ConfigSection]] = {
    "vae": VAEConfig, "image_encoder": ImageEncoderConfig, "flow": FlowConfig,
    "train_vae": TrainVAEConfig, "train_flow": TrainFlowConfig, "sampling": SamplingConfig}


@dataclass(frozen=True, kw_only=True)
class ModelConfig(ConfigSection):
    """A whole config, as ``configs/*.json`` and every model file hold it: the architecture
    (``vae``, ``image_encoder``, ``flow``: what :class:`.shape_model.Kubik3DModel` builds), how it
    is trained (``train_vae``, ``train_flow``) and its sampling defaults (``sampling``)."""

    fields_schema: ClassVar = {**TOP_LEVEL, **{section: Field(dict) for section in SECTIONS}}
    path: ClassVar = ""
    name: str | None = None
    description: str | None = None
    vae: VAEConfig
    image_encoder: ImageEncoderConfig
    flow: FlowConfig
    train_vae: TrainVAEConfig
    train_flow: TrainFlowConfig
    sampling: SamplingConfig

    def __post_init__(self) -> None:
        validate_config(self.to_dict(), type(self).__name__)

    @classmethod
    def from_dict(cls, values, what: str = "model config") -> "ModelConfig":
        return cls._from_checked(validate_config(values, what))

    @classmethod
    def _from_checked(cls, values: dict) -> "ModelConfig":
        top = {key: values[key] for key in TOP_LEVEL if key in values}
        return cls(**top, **{section: SECTION_TYPES[section]._from_checked(values[section]) for section in SECTIONS})


def config_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def parse_config_json(text: str | bytes, what: str = "model config") -> ModelConfig:
    """A config from JSON text a hostile writer may control: bounded size and depth, finite numbers,
    then the schema."""
    try:
        config = bounded_loads(text, max_depth=8, max_bytes=MAX_CONFIG_BYTES)
    except BoundedJSONError as exc:
        raise ConfigError(f"{what} is not usable JSON: {exc}") from None
    return ModelConfig.from_dict(config, what)


def load_config(name_or_path: str | Path | dict | ModelConfig, overrides: dict | None = None) -> ModelConfig:
    """A config by name (``tiny``, ``base``), by JSON path, or a dict or ModelConfig; ``overrides``
    are merged per section (``{"train_vae": {"steps": 10}}``). The result is checked against the schema."""
    if isinstance(name_or_path, ModelConfig):
        if not overrides:
            return name_or_path   # checked when it was made, and frozen
        config = name_or_path.to_dict()
    elif isinstance(name_or_path, dict):
        config = copy.deepcopy(name_or_path)
    else:
        path = Path(name_or_path)
        if not path.suffix and (CONFIG_DIR / f"{path}.json").is_file():
            path = CONFIG_DIR / f"{path}.json"
        if not path.is_file():
            raise ValueError(f"unknown model config {str(name_or_path)!r}: give one of "
                             f"{', '.join(config_names())} or a JSON file path")
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"model config {path} is {path.stat().st_size:,} bytes; a config is a few KB "
                              f"(limit {MAX_CONFIG_BYTES:,})")
        try:
            config = bounded_loads(path.read_bytes(), max_depth=8, max_bytes=MAX_CONFIG_BYTES)
        except BoundedJSONError as exc:
            raise ConfigError(f"model config {path}: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"model config {str(name_or_path)[:100]!r} must be a JSON object, not {type(config).__name__}")
    missing = [s for s in SECTIONS if not isinstance(config.get(s), dict)]
    if missing:
        raise ValueError(f"model config {str(config.get('name', name_or_path))[:100]!r} lacks the section(s) "
                         f"{', '.join(missing)}")
    for section, values in (overrides or {}).items():
        if section not in SECTIONS:
            raise ValueError(f"unknown config section {section!r}; sections: {', '.join(SECTIONS)}")
        config[section].update(values)
    return ModelConfig.from_dict(config)


def validate_config(config, what: str = "model config") -> dict:
    """``config`` itself when it fits :data:`SCHEMA`; ConfigError naming the first key at fault."""
    if not isinstance(config, dict):
        raise ConfigError(f"{what} must be a JSON object, not {type(config).__name__}")
    _check_keys(config, {**TOP_LEVEL, **{s: Field(dict) for s in SECTIONS}}, "", what)
    for section in SECTIONS:
        _check_keys(config[section], SCHEMA[section], f"{section}.", what)
    kwargs = config["image_encoder"].get("backbone_kwargs")
    if kwargs is not None:
        _check_keys(kwargs, BACKBONE_KWARGS, "image_encoder.backbone_kwargs.", what)
    backbone = config["image_encoder"]["backbone"]
    if not _BACKBONE_NAME.fullmatch(backbone):
        raise ConfigError(f"{what}: image_encoder.backbone {backbone[:100]!r} is not a timm architecture name "
                          "(letters, digits, '_' and '.'; no hub or file names)")
    for section, width, heads in (("vae", "width", "heads"), ("flow", "width", "heads")):
        if config[section][width] % config[section][heads]:
            raise ConfigError(f"{what}: {section}.{width} {config[section][width]} is not divisible by "
                              f"{section}.{heads} {config[section][heads]}")
    if kwargs and "embed_dim" in kwargs and "num_heads" in kwargs and kwargs["embed_dim"] % kwargs["num_heads"]:
        raise ConfigError(f"{what}: image_encoder.backbone_kwargs.embed_dim {kwargs['embed_dim']} is not "
                          f"divisible by num_heads {kwargs['num_heads']}")
    return config


def _check_keys(values: dict, fields: dict[str, Field], prefix: str, what: str) -> None:
    if not isinstance(values, dict):
        raise ConfigError(f"{what}: {prefix.rstrip('.')} must be an object, not {type(values).__name__}")
    unknown = sorted(str(k) for k in values if k not in fields)
    if unknown:
        shown = unknown[0] if unknown[0].isidentifier() else repr(unknown[0][:60])
        raise ConfigError(f"{what}: unknown key {prefix}{shown}; known keys: {', '.join(fields)}")
    for key, field in fields.items():
        if key not in values:
            if field.required:
                raise ConfigError(f"{what}: {prefix}{key} is missing")
            continue
        _check_value(values[key], field, f"{prefix}{key}", what)


def _check_value(value, field: Field, name: str, what: str) -> None:
    if value is None:
        if field.nullable:
            return
        raise ConfigError(f"{what}: {name} must not be null")
    if field.kind is bool:
        ok = isinstance(value, bool)
        expected = "true or false"
    elif field.kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected = "an integer"
    elif field.kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        expected = "a finite number"
    elif field.kind is str:
        ok = isinstance(value, str) and len(value) <= field.max_length
        expected = f"a string of at most {field.max_length} characters"
    else:
        ok = isinstance(value, dict)
        expected = "an object"
    if not ok:
        raise ConfigError(f"{what}: {name} must be {expected}, got {_show(value)}")
    if field.choices and value not in field.choices:
        raise ConfigError(f"{what}: {name} must be one of {', '.join(field.choices)}, got {_show(value)}")
    if field.low is not None and not field.low <= value <= field.high:
        low, high = (field.low, field.high) if field.kind is int else (f"{field.low:g}", f"{field.high:g}")
        raise ConfigError(f"{what}: {name} must be from {low} to {high}, got {_show(value)}")


def _show(value) -> str:
    if isinstance(value, int) and abs(value) > 10 ** 30:
        return f"an integer of {len(str(abs(value))) if abs(value) < 10 ** 4000 else 'thousands of'} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
