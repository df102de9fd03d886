"""One LoRA of the library, as the scan reads it (header + sidecars, never the tensors)."""
from __future__ import annotations

import json
import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from .architecture import detect_architecture
from .errors import LoraFileError
from .safetensors_header import read_header
from .sidecars import SidecarInfo, read_sidecars

SAFETENSORS_EXTENSIONS = (".safetensors", ".sft")
# Pickle-based formats ComfyUI also lists: listed, never unpickled by the scan.
PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pt2")
LORA_EXTENSIONS = SAFETENSORS_EXTENSIONS + PICKLE_EXTENSIONS
TOP_TAGS = 40           # tags from ss_tag_frequency kept per LoRA (for search)
TRIGGER_TAGS = 3        # at most this many frequent training tags become trigger words
_REPEATS_DIR = re.compile(r"^\d+_")   # kohya dataset folders are "<repeats>_<name>"


@dataclass
class LoraEntry:
    """Everything the recommender, the nodes and ``kubik loras scan`` need about one file."""

    name: str                     # path relative to its library folder, "/"-separated (ComfyUI's lora_name)
    path: str                     # absolute path
    size: int = 0
    mtime_ns: int = 0
    format: str = "safetensors"   # or "pickle" (listed, not read)
    base: str = "unknown"         # base architecture (architecture.py)
    variant: str = ""
    arch_source: str = ""
    layout: str = ""              # "kohya", "peft", "diffusers", "comfy" or ""
    rank: int = 0
    alpha: float = 0.0
    tensors: int = 0
    trains_text_encoder: bool = False
    title: str = ""
    base_model_name: str = ""     # ss_sd_model_name: the checkpoint it was trained on
    clip_skip: int = 0
    resolution: str = ""
    tags: list[str] = field(default_factory=list)          # most frequent training tags first
    triggers: list[str] = field(default_factory=list)
    sidecar: dict[str, Any] = field(default_factory=dict)  # SidecarInfo as a dict
    sha256: str = ""
    autov2: str = ""
    autov3: str = ""
    hash_source: str = ""         # "computed" or the sidecar that claimed it
    data_offset: int = 0          # where the tensor data starts (AutoV3)
    problems: list[str] = field(default_factory=list)
    readable: bool = True

    @property
    def stem(self) -> str:
        base = Path(self.name).name
        return base.rpartition(".")[0] or base

    @property
    def info(self) -> SidecarInfo:
        known = {f.name for f in fields(SidecarInfo)}
        return SidecarInfo(**{k: v for k, v in self.sidecar.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        """Fields that differ from their defaults (the cache stays small and loads fast)."""
        data = {k: v for k, v in vars(self).items() if k in _DEFAULTS and v != _DEFAULTS[k]}
        data["sidecar"] = {k: v for k, v in self.sidecar.items() if v != _SIDECAR_DEFAULTS.get(k)}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LoraEntry":
        return cls(**{k: v for k, v in data.items() if k in _DEFAULTS})


def _defaults(cls) -> dict[str, Any]:
    out = {}
    for f in fields(cls):
        out[f.name] = f.default_factory() if f.default_factory is not MISSING else f.default
    return out


_DEFAULTS = _defaults(LoraEntry)
_SIDECAR_DEFAULTS = _defaults(SidecarInfo)


def read_entry(path: Path, name: str, size: int, mtime_ns: int, names_in_folder: set[str]) -> LoraEntry:
    """Read one LoRA file's header and sidecars. Never raises for a bad file: problems are recorded."""
    entry = LoraEntry(name=name, path=str(path), size=size, mtime_ns=mtime_ns)
    info = read_sidecars(path, names_in_folder)
    entry.problems += info.problems
    metadata: dict[str, str] = {}
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    if path.suffix.lower() in PICKLE_EXTENSIONS:
        entry.format = "pickle"
        entry.readable = False
        entry.problems.append("pickle-based file: listed but not read (it could run code); "
                              "convert it to .safetensors to use it here")
    else:
        try:
            header = read_header(path, size)
        except LoraFileError as exc:
            entry.readable = False
            entry.problems.append(str(exc).replace(str(path) + ": ", ""))
        else:
            metadata, tensors = header.metadata, header.tensors
            entry.problems += header.problems
            entry.data_offset = 8 + header.header_bytes
            _read_structure(entry, tensors)
            _read_metadata(entry, metadata)
    arch = detect_architecture(metadata, tensors, info.civitai_base, info.a1111_version,
                               Path(name).name)
    entry.base, entry.variant, entry.arch_source = arch.base, arch.variant, arch.source
    entry.title = info.title or entry.title
    if info.sha256 and _sidecar_is_newer(path, info, names_in_folder, mtime_ns):
        entry.sha256, entry.autov2, entry.hash_source = info.sha256, info.sha256[:10], "sidecar"
    if info.usage_tips.get("clip_skip"):
        entry.clip_skip = int(info.usage_tips["clip_skip"])
    entry.sidecar = dict(vars(info))
    entry.triggers = trigger_words(info, metadata, entry.tags)
    return entry


def _sidecar_is_newer(path: Path, info: SidecarInfo, names: set[str], mtime_ns: int) -> bool:
    """A hash claimed by a sidecar is trusted only if the sidecar was written after the file."""
    for name in info.files:
        try:
            if (path.parent / name).stat().st_mtime_ns >= mtime_ns:
                return True
        except OSError:
            continue
    return False


def _read_structure(entry: LoraEntry, tensors: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    entry.tensors = len(tensors)
    keys = list(tensors)
    if any(k.startswith(("lora_unet_", "lora_te")) for k in keys):
        entry.layout = "kohya"
    elif any(".lora_A." in k or ".lora_B." in k for k in keys):
        entry.layout = "peft"
    elif any("lora.down." in k or "lora.up." in k or ".lora_linear_layer." in k for k in keys):
        entry.layout = "diffusers"
    elif any(k.startswith("diffusion_model.") for k in keys):
        entry.layout = "comfy"
    entry.trains_text_encoder = any(
        k.startswith(("lora_te", "text_encoder", "te_", "te1", "te2")) or ".text_model." in k
        for k in keys)
    for key in keys:
        if key.endswith(("lora_down.weight", "lora_A.weight", "lora.down.weight",
                         "lora_linear_layer.down.weight")):
            shape = tensors[key][1]
            if shape:
                entry.rank = int(shape[0])
                break
    if not tensors:
        entry.problems.append("no tensors in the file")
    if any(k.startswith("unet.") and ".processor." not in k for k in keys):
        # ComfyUI 0.8.0 comfy/lora.py model_lora_keys_unet maps diffusers UNet names only in the
        # attention-processor form (unet.*.attn1.processor.to_q); PEFT/diffusers training scripts
        # save unet.*.attn1.to_q.lora_A / .lora.down, which it skips with "lora key not loaded".
        entry.problems.append("UNet keys use diffusers/PEFT names (unet.*.to_q.lora_A) that ComfyUI's LoRA "
                              "loader does not map: only the text-encoder part would apply; convert the "
                              "file to kohya format (diffusers' convert_state_dict_to_kohya)")


def _read_metadata(entry: LoraEntry, metadata: dict[str, str]) -> None:
    entry.title = metadata.get("modelspec.title") or metadata.get("ss_output_name", "")
    entry.base_model_name = metadata.get("ss_sd_model_name", "")
    entry.resolution = metadata.get("ss_resolution") or metadata.get("modelspec.resolution", "")
    entry.alpha = _float(metadata.get("ss_network_alpha"))
    if not entry.rank:
        entry.rank = int(_float(metadata.get("ss_network_dim")))
    skip = _float(metadata.get("ss_clip_skip")) or _float(metadata.get("modelspec.encoder_layer"))
    entry.clip_skip = int(abs(skip)) if skip and skip > 1 else 0
    freq = metadata.get("ss_tag_frequency")
    if freq:
        try:
            entry.tags = top_tags(json.loads(freq))
        except (ValueError, TypeError, AttributeError):
            entry.problems.append("ss_tag_frequency is not valid JSON; training tags ignored")


def _float(text: str | None) -> float:
    try:
        value = float(text) if text not in (None, "", "None") else 0.0
    except (TypeError, ValueError):
        return 0.0
    return value if value == value else 0.0  # NaN -> 0


def top_tags(frequency: dict) -> list[str]:
    """Merge kohya's ``{dataset folder: {tag: count}}`` and return tags, most frequent first."""
    counts: dict[str, int] = {}
    for folder_tags in frequency.values():
        if not isinstance(folder_tags, dict):
            continue
        for tag, count in folder_tags.items():
            tag = str(tag).strip()
            if tag and isinstance(count, (int, float)):
                counts[tag] = counts.get(tag, 0) + int(count)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [tag for tag, _ in ranked[:TOP_TAGS]]


def trigger_words(info: SidecarInfo, metadata: dict[str, str], tags: list[str]) -> list[str]:
    """Trigger words, most authoritative first: CivitAI trainedWords, modelspec.trigger_phrase,
    A1111 activation text, kohya class tokens, then the most frequent training tags."""
    found: list[str] = []
    found += info.trained_words
    phrase = metadata.get("modelspec.trigger_phrase", "")
    found += [p for p in (s.strip() for s in phrase.split(",")) if p]
    found += [p for p in (s.strip() for s in info.activation_text.split(",")) if p]
    found += _class_tokens(metadata.get("ss_datasets", ""))
    if not found:
        found += tags[:TRIGGER_TAGS]
    seen, unique = set(), []
    for word in found:
        if word.lower() not in seen:
            seen.add(word.lower())
            unique.append(word)
    return unique


def _class_tokens(datasets: str) -> list[str]:
    if not datasets:
        return []
    try:
        data = json.loads(datasets)
    except ValueError:
        return []
    tokens = []
    for dataset in data if isinstance(data, list) else []:
        for subset in dataset.get("subsets", []) if isinstance(dataset, dict) else []:
            token = subset.get("class_tokens") if isinstance(subset, dict) else None
            if isinstance(token, str) and token.strip():
                tokens.append(token.strip())
    return tokens
