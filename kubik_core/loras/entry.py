"""One LoRA of the library, as the scan reads it (header + sidecars, never the tensors).

The header's metadata is written by whoever trained (or crafted) the file: numbers arrive as
text ("8", "None", "1e999", "nan"), ss_tag_frequency and ss_datasets are JSON inside a string.
Each is read within bounds (kubik_core.common.bounded_json for the JSON, a range for each
number, caps on texts and lists); a value outside them is skipped and recorded as a problem of
the file, so the entry, the index cache and the recommender only ever hold finite, bounded
values.
"""
from __future__ import annotations

import math
import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..common.bounded_json import BoundedJSONError
from ..common.bounded_json import loads as bounded_loads
from ..common.safetensors_file import SafetensorsFileError, SafetensorsHeader, read_header
from .architecture import detect_architecture
from .sidecars import (MAX_CLIP_SKIP, MAX_ITEMS, MAX_PROMPT_CHARS, MAX_SUMMARY_CHARS, MAX_TITLE_CHARS,
                       MAX_WORD_CHARS, SidecarInfo, read_sidecars)

SAFETENSORS_EXTENSIONS = (".safetensors", ".sft")
# Pickle-based formats ComfyUI also lists: listed, never unpickled by the scan.
PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pt2")
LORA_EXTENSIONS = SAFETENSORS_EXTENSIONS + PICKLE_EXTENSIONS
TOP_TAGS = 40           # tags from ss_tag_frequency kept per LoRA (for search, never as triggers)
MAX_TRIGGERS = 50       # trigger words kept per LoRA, most authoritative first
# Metadata fields some trainers and tools write the trigger words into (comma-separated text).
TRIGGER_FIELDS = ("modelspec.trigger_phrase", "ss_trigger_words", "ss_trigger_word", "trigger_words",
                  "trigger_word")
MAX_RANK = 65536        # ss_network_dim / ss_network_alpha beyond any real network
MAX_NUMBER_CHARS = 64   # a number written as text longer than this is not a number
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
    spec_tags: list[str] = field(default_factory=list)     # modelspec.tags (the trainer's own labels)
    spec_description: str = ""                             # opening of modelspec.description
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
    def from_dict(cls, data: Any) -> "LoraEntry":
        """An entry from the index cache; TypeError when a field has another type than the
        entry's own (a damaged cache entry is read again from the file, never used)."""
        if not isinstance(data, dict):
            raise TypeError("a cache entry is not an object")
        sidecar = data.get("sidecar", {})
        checks = [(data, _DEFAULTS), (sidecar if isinstance(sidecar, dict) else {}, _SIDECAR_DEFAULTS)]
        for values, defaults in checks:
            for key, value in values.items():
                if key in defaults and not _same_kind(value, defaults[key]):
                    raise TypeError(f"cache field {key} has type {type(value).__name__}")
        return cls(**{k: v for k, v in data.items() if k in _DEFAULTS})


def _same_kind(value: Any, default: Any) -> bool:
    if default is MISSING:  # name and path
        return isinstance(value, str)
    if isinstance(default, bool) or isinstance(value, bool):
        return type(value) is type(default)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, type(default))


def _defaults(cls) -> dict[str, Any]:
    out = {}
    for f in fields(cls):
        out[f.name] = f.default_factory() if f.default_factory is not MISSING else f.default
    return out


_DEFAULTS = _defaults(LoraEntry)
_SIDECAR_DEFAULTS = _defaults(SidecarInfo)


def read_listed_header(path: Path, name: str, problems: list[str]) -> SafetensorsHeader | None:
    """The safetensors header of a file found in a model folder, or None when it cannot or must not
    be read: a pickle-based file is listed but never opened (unpickling can run code), a broken
    header is recorded. Why it was not read, and any oddity of a readable header, go to ``problems``."""
    if path.suffix.lower() in PICKLE_EXTENSIONS:
        problems.append("pickle-based file: listed but not read (it could run code); "
                        "convert it to .safetensors to use it here")
        return None
    try:
        header = read_header(path, name)
    except SafetensorsFileError as exc:
        problems.append(exc.reason)
        return None
    problems += header.problems
    return header


def read_entry(path: Path, name: str, size: int, mtime_ns: int, names_in_folder: set[str]) -> LoraEntry:
    """Read one LoRA file's header and sidecars. Never raises for a bad file: problems are recorded."""
    entry = LoraEntry(name=name, path=str(path), size=size, mtime_ns=mtime_ns)
    info = read_sidecars(path, names_in_folder)
    entry.problems += info.problems
    metadata: dict[str, str] = {}
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    if path.suffix.lower() in PICKLE_EXTENSIONS:
        entry.format = "pickle"
    header = read_listed_header(path, name, entry.problems)
    entry.readable = header is not None
    if header is not None:
        metadata, tensors = header.metadata, header.tensors
        entry.data_offset = header.data_start
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
    entry.triggers = trigger_words(info, metadata, entry.problems)
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
    problems = entry.problems
    entry.title = _text(metadata, "modelspec.title", problems) or _text(metadata, "ss_output_name", problems)
    entry.base_model_name = _text(metadata, "ss_sd_model_name", problems)
    entry.resolution = (_text(metadata, "ss_resolution", problems, 40)
                        or _text(metadata, "modelspec.resolution", problems, 40))
    entry.alpha = _number(metadata, "ss_network_alpha", problems, 0, MAX_RANK) or 0.0
    dim = _number(metadata, "ss_network_dim", problems, 0, MAX_RANK, whole=True)
    entry.rank = entry.rank or int(dim or 0)  # the tensors' shape, where there is one, wins
    skip = (_number(metadata, "ss_clip_skip", problems, 0, MAX_CLIP_SKIP, whole=True)
            or _number(metadata, "modelspec.encoder_layer", problems, -MAX_CLIP_SKIP, MAX_CLIP_SKIP,
                       whole=True))
    entry.clip_skip = int(abs(skip)) if skip and skip > 1 else 0
    entry.spec_tags = [t.lower() for t in _phrases(_text(metadata, "modelspec.tags", problems,
                                                          MAX_PROMPT_CHARS))][:MAX_ITEMS]
    entry.spec_description = metadata.get("modelspec.description", "").strip()[:MAX_SUMMARY_CHARS]
    frequency = _json(metadata, "ss_tag_frequency", problems, "training tags ignored")
    if frequency is not None:
        if isinstance(frequency, dict):
            entry.tags = top_tags(frequency)
        else:
            problems.append("ss_tag_frequency is not an object of folders; training tags ignored")


def _text(metadata: dict[str, str], key: str, problems: list[str], limit: int = MAX_TITLE_CHARS) -> str:
    value = metadata.get(key, "").strip()
    if len(value) > limit:
        problems.append(f"{key} is longer than {limit} characters; cut")
        value = value[:limit].rstrip()
    return value


def _number(metadata: dict[str, str], key: str, problems: list[str], low: float, high: float,
            whole: bool = False) -> float | None:
    """A number kohya wrote as text, if it is one within [low, high]; "", "None" mean unset."""
    text = metadata.get(key, "").strip()
    if text in ("", "None", "none", "null"):
        return None
    try:
        value = float(text) if len(text) <= MAX_NUMBER_CHARS else math.nan
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and low <= value <= high and (not whole or value == int(value))):
        kind = "a whole number" if whole else "a number"
        problems.append(f"{key} {text[:40]!r} is not {kind} from {low:g} to {high:g}; ignored")
        return None
    return value


def _json(metadata: dict[str, str], key: str, problems: list[str], consequence: str) -> Any:
    """JSON kohya stores inside a metadata string, parsed within bounds; None if absent or bad."""
    text = metadata.get(key, "")
    if not text:
        return None
    try:
        return bounded_loads(text)
    except BoundedJSONError as exc:
        problems.append(f"{key}: {exc}; {consequence}")
        return None


def top_tags(frequency: dict) -> list[str]:
    """Merge kohya's ``{dataset folder: {tag: count}}`` and return tags, most frequent first."""
    counts: dict[str, int] = {}
    for folder_tags in frequency.values():
        if not isinstance(folder_tags, dict):
            continue
        for tag, count in folder_tags.items():
            tag = tag.strip()
            if tag and len(tag) <= MAX_WORD_CHARS and isinstance(count, (int, float)) \
                    and not isinstance(count, bool):
                counts[tag] = counts.get(tag, 0) + int(count)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [tag for tag, _ in ranked[:TOP_TAGS]]


def trigger_words(info: SidecarInfo, metadata: dict[str, str], problems: list[str] | None = None) -> list[str]:
    """Trigger words, most authoritative first: CivitAI trainedWords (also as Lora-Manager keeps
    them), the metadata's trigger fields (TRIGGER_FIELDS: ModelSpec trigger_phrase and the ss_
    fields some trainers write), A1111's activation text, kohya's DreamBooth class tokens.

    Only fields whose purpose is to name triggers count: the most frequent training tags
    (ss_tag_frequency) are what the images showed ("1girl", "solo"), not words that call the
    LoRA, and appending them would change the user's prompt. A LoRA without a trigger field has
    no trigger words. At most MAX_TRIGGERS, each at most MAX_WORD_CHARS long; ``problems``
    collects what was left out of the metadata (a bad ss_datasets, too many or too long words).
    """
    problems = [] if problems is None else problems
    found: list[str] = []
    found += info.trained_words
    for key in TRIGGER_FIELDS:
        found += _listed(metadata.get(key, ""), key, problems)
    found += _phrases(info.activation_text)
    found += _class_tokens(_json(metadata, "ss_datasets", problems, "class tokens ignored"))
    seen, unique = set(), []
    too_long = False
    for word in found:
        if len(word) > MAX_WORD_CHARS:
            too_long = True
        elif word.lower() not in seen:
            seen.add(word.lower())
            unique.append(word)
    if too_long:
        problems.append(f"trigger words longer than {MAX_WORD_CHARS} characters skipped")
    if len(unique) > MAX_TRIGGERS:
        problems.append(f"{len(unique)} trigger words; the first {MAX_TRIGGERS} kept")
    return unique[:MAX_TRIGGERS]


def _phrases(text: str) -> list[str]:
    return [p for p in (s.strip() for s in text.split(",")) if p]


def _listed(text: str, key: str, problems: list[str]) -> list[str]:
    """Phrases of a trigger field: comma-separated text, or a JSON list of texts as some tools
    write it (a list that is not valid JSON is a problem of the file, and gives nothing)."""
    if not text.lstrip().startswith("["):
        return _phrases(text)
    try:
        items = bounded_loads(text)
    except BoundedJSONError as exc:
        problems.append(f"{key}: {exc}; trigger words ignored")
        return []
    return [p for item in items if isinstance(item, str) for p in _phrases(item)] if isinstance(items, list) else []


def _class_tokens(data: Any) -> list[str]:
    """kohya's class tokens from the parsed ss_datasets ([{subsets: [{class_tokens}]}])."""
    tokens = []
    for dataset in data if isinstance(data, list) else []:
        subsets = dataset.get("subsets") if isinstance(dataset, dict) else None
        for subset in subsets if isinstance(subsets, list) else []:
            token = subset.get("class_tokens") if isinstance(subset, dict) else None
            if isinstance(token, str) and token.strip():
                tokens.append(token.strip())
    return tokens
