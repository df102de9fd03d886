"""Textual-inversion embeddings: scan ComfyUI's ``embeddings`` folders and propose embeddings for
the positive and the negative prompt, written as ComfyUI calls them (``embedding:name``).

    from kubik_core.loras.embeddings import scan_embeddings, recommend_embeddings
    library = scan_embeddings(["/ComfyUI/models/embeddings"])
    advice = recommend_embeddings(library.entries, analysis, family="sdxl")
    advice.negative_text   # "embedding:negativeXL_D, embedding:unaestheticXLv31"

The scan walks the folders as the LoRA scan does (library.py: regular files only, link loops
seen once, a folder that cannot be listed recorded) and reads each safetensors header and the
same sidecars as a LoRA's (sidecars.py). Pickle-based files (.pt, .bin, .ckpt ...) are listed,
never unpickled. Embedding files are a few KB, so there is no index cache: every scan reads the
headers again.

Base architecture from the tensor shapes, the way ComfyUI's loader uses them (comfy/sd1_clip.py
load_embed: an SD1.x/SDXL clip_l encoder takes 768-wide vectors, SD2.x 1024, SDXL's clip_g 1280,
an SDXL file holds a ``clip_l`` and a ``clip_g`` tensor): 768 -> sd1, 1024 -> sd2, clip_l 768 +
clip_g 1280 -> sdxl; a CivitAI sidecar's baseModel adds the variant (Pony, Illustrious) or
decides where the shapes cannot. An embedding of another width than the loaded model's encoder
is skipped by ComfyUI with a shape warning, so the recommender proposes only embeddings of the
model's base.

Negative embeddings (EasyNegative, badhandv4, negativeXL, unaestheticXL ...) are told by their
name, title, tags or sidecar text; the recommender proposes those of the family for the
negative prompt (none where the family runs at CFG 1 and makes no negative pass), and a
positive embedding only when the prompt names it or its trigger word.

ComfyUI reads ``embedding:`` only at the start of the text or after a space or newline, up to the
next space (a trailing comma is stripped), and tries the name as given, then with .safetensors,
.pt, .bin: so a name with a space cannot be called (a problem of the file), and a file of another
extension is called with its extension.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .architecture import BASE_LABELS, UNKNOWN, from_civitai_base
from .entry import LORA_EXTENSIONS, PICKLE_EXTENSIONS, read_listed_header
from .library import _walk
from .sidecars import read_sidecars

EMBEDDING_EXTENSIONS = LORA_EXTENSIONS   # ComfyUI's supported_pt_extensions for the folder
IDENTIFIER = "embedding:"
# Extensions ComfyUI adds itself when the name has none (sd1_clip.load_embed).
IMPLICIT_EXTENSIONS = (".safetensors", ".pt", ".bin")
# CLIP reads 75 tokens per chunk; an embedding longer than that fills more than a whole chunk.
MAX_VECTORS = 75
# Width of the vectors -> base architecture (the text encoders' hidden sizes).
WIDTHS = {768: "sd1", 1024: "sd2", 1280: "sdxl"}
# Bases whose CLIP text encoders take textual-inversion embeddings in ComfyUI.
TI_BASES = ("sd1", "sd2", "sdxl")
# Words negative embeddings are named with (EasyNegative, ng_deepnegative, badhandv4, bad_prompt,
# bad-artist, BadDream, verybadimagenegative, unaestheticXL, worst quality ...).
_NEGATIVE_WORDS = re.compile(r"negative|unaesthetic|verybad|(^|[^a-z])(neg|worst|bad( |[-_]?(hands?|prompt|"
                             r"artist|dream|quality|anatomy|image|picture|pic|body|face|eyes?|fingers?)))",
                             re.I)


@dataclass
class EmbeddingEntry:
    """One embedding file as the scan reads it (header and sidecars, never the tensors)."""

    name: str                   # path relative to its folder, "/"-separated
    path: str
    size: int = 0
    format: str = "safetensors"  # or "pickle" (listed, not read)
    base: str = UNKNOWN
    variant: str = ""
    arch_source: str = ""
    vectors: int = 0            # tokens the embedding takes in the prompt
    title: str = ""
    triggers: list[str] = field(default_factory=list)   # CivitAI trainedWords, A1111 activation text
    tags: list[str] = field(default_factory=list)
    negative: bool = False
    negative_reason: str = ""
    downloads: int = 0
    problems: list[str] = field(default_factory=list)
    readable: bool = True

    @property
    def token(self) -> str:
        """How a prompt calls it: ``embedding:sub/name`` (extension kept where ComfyUI would
        not add it)."""
        stem, dot, ext = self.name.rpartition(".")
        called = stem if dot and f".{ext.lower()}" in IMPLICIT_EXTENSIONS else self.name
        return IDENTIFIER + called

    @property
    def callable(self) -> bool:
        return self.readable and not any(c.isspace() for c in self.name)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "token": self.token}


@dataclass
class EmbeddingLibrary:
    roots: list[str]
    entries: list[EmbeddingEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def scan_embeddings(roots: Iterable[str | os.PathLike]) -> EmbeddingLibrary:
    """Every embedding file under ``roots``; bad files become problems of their entry."""
    started = time.perf_counter()
    roots = [os.path.abspath(os.fspath(r)) for r in roots]
    library = EmbeddingLibrary(roots=roots)
    found: list = []
    visited: set[tuple[int, int]] = set()
    for root in roots:
        if not os.path.isdir(root):
            library.problems.append(f"{root}: not a folder")
            continue
        _walk(root, root, found, visited, library.problems)
    for _root, rel, dir_entry, siblings in found:
        try:
            size = dir_entry.stat().st_size
        except OSError:
            continue  # gone since the listing
        library.entries.append(read_embedding(Path(dir_entry.path), rel, size, set(siblings)))
    library.entries.sort(key=lambda e: e.name.lower())
    library.seconds = time.perf_counter() - started
    return library


def read_embedding(path: Path, name: str, size: int, names_in_folder: set[str]) -> EmbeddingEntry:
    """One embedding's header and sidecars. Never raises for a bad file: problems are recorded."""
    entry = EmbeddingEntry(name=name, path=str(path), size=size)
    info = read_sidecars(path, names_in_folder)
    entry.problems += info.problems
    widths: dict[str, int] = {}
    if path.suffix.lower() in PICKLE_EXTENSIONS:
        entry.format = "pickle"
    header = read_listed_header(path, name, entry.problems)
    entry.readable = header is not None
    if header is not None:
        widths = _vector_widths(entry, header.tensors)
    _architecture(entry, widths, info.civitai_base)
    entry.title = info.title or info.model_name
    entry.triggers = info.trained_words[:50] or [p.strip() for p in info.activation_text.split(",") if p.strip()][:50]
    entry.tags = info.tags[:50]
    entry.downloads = info.downloads
    entry.negative, entry.negative_reason = _negative(entry, info)
    if any(c.isspace() for c in name):
        entry.problems.append("the name has a space: ComfyUI's embedding:name stops at the space and "
                              "cannot call it; rename the file without spaces")
    return entry


def _vector_widths(entry: EmbeddingEntry, tensors: dict[str, tuple[str, tuple[int, ...]]]) -> dict[str, int]:
    """{tensor name: vector width} of the tensors ComfyUI could load as token vectors."""
    widths = {}
    for key, (_dtype, shape) in tensors.items():
        if len(shape) in (1, 2) and shape[-1] in WIDTHS:
            widths[key] = shape[-1]
            entry.vectors = max(entry.vectors, shape[0] if len(shape) == 2 else 1)
    if not tensors:
        entry.problems.append("no tensors in the file")
    elif not widths:
        shapes = ", ".join(f"{k} {list(s)}" for k, (_d, s) in list(tensors.items())[:3])
        entry.problems.append(f"no tensor of 768, 1024 or 1280 vectors ({shapes[:200]}): not a "
                              "textual-inversion embedding ComfyUI can load")
    if entry.vectors > MAX_VECTORS:
        entry.problems.append(f"{entry.vectors} vectors: more than CLIP's {MAX_VECTORS}-token window; "
                              "it would push the rest of the prompt into another chunk")
    return widths


def _architecture(entry: EmbeddingEntry, widths: dict[str, int], civitai_base: str) -> None:
    """Base from the shapes (what ComfyUI loads), variant or a missing base from the sidecar."""
    by_name = {key.lower(): width for key, width in widths.items()}
    sidecar = from_civitai_base(civitai_base) if civitai_base else None
    if by_name.get("clip_l") == 768 and by_name.get("clip_g") == 1280:
        entry.base, entry.arch_source = "sdxl", "tensor shapes: clip_l 768 + clip_g 1280"
    elif by_name.get("clip_g") == 1280:
        entry.base, entry.arch_source = "sdxl", "tensor shapes: clip_g 1280 only"
        entry.problems.append("only a clip_g tensor: SDXL's clip_l encoder gets nothing from it")
    elif set(widths.values()) == {768}:
        entry.base, entry.arch_source = "sd1", "tensor shapes: 768-wide vectors (CLIP ViT-L)"
    elif set(widths.values()) == {1024}:
        entry.base, entry.arch_source = "sd2", "tensor shapes: 1024-wide vectors (OpenCLIP ViT-H)"
    elif widths:
        entry.problems.append("tensors of several widths without clip_l/clip_g names: base unknown")
    if entry.base == UNKNOWN and sidecar is not None:
        entry.base, entry.arch_source = sidecar.base, "civitai"
    if sidecar is not None and sidecar.base == entry.base:
        entry.variant = sidecar.variant
    elif sidecar is not None and entry.base != UNKNOWN:
        entry.problems.append(f"the sidecar says {sidecar.label} but the tensors are "
                              f"{BASE_LABELS.get(entry.base, entry.base)}; the tensors win")


def _negative(entry: EmbeddingEntry, info) -> tuple[bool, str]:
    """Whether the embedding belongs in the negative prompt, and the evidence."""
    stem = Path(entry.name).stem
    for what, text in (("its name", stem), ("its title", entry.title)):
        text = text.replace("_", " ").replace("-", " ")
        match = _NEGATIVE_WORDS.search(text) if text else None
        if match:
            start, end = match.start(), match.end()
            start += not text[start].isalnum()
            while end < len(text) and text[end].isalnum():   # the whole word the match ends in
                end += 1
            return True, f"{what} says {text[start:end].strip()!r}"
    for tag in entry.tags:
        if "negative" in tag:
            return True, f"tagged {tag!r}"
    description = f"{info.description} {info.model_description}".lower()
    if "negative prompt" in description or "negative embedding" in description:
        return True, "its description says to use it in the negative prompt"
    return False, ""


# ------------------------------------------------------------------ recommendation
@dataclass
class EmbeddingPick:
    name: str
    token: str
    reason: str


@dataclass
class EmbeddingAdvice:
    """Embeddings for the positive and negative prompt, with reasons; an explain() section."""

    family: str
    positive: list[EmbeddingPick] = field(default_factory=list)
    negative: list[EmbeddingPick] = field(default_factory=list)
    skipped: list[EmbeddingPick] = field(default_factory=list)   # reason = why not proposed
    notes: list[str] = field(default_factory=list)
    title: str = "Embeddings"

    @property
    def positive_text(self) -> str:
        return ", ".join(p.token for p in self.positive)

    @property
    def negative_text(self) -> str:
        return ", ".join(p.token for p in self.negative)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("title")
        data.update(positive_text=self.positive_text, negative_text=self.negative_text)
        return data

    def explain(self, verbosity: str) -> str:
        if verbosity == "minimal":
            parts = ([f"+{self.positive_text}"] if self.positive else []) + (
                [f"-{self.negative_text}"] if self.negative else [])
            return " ".join(parts)
        lines = [f"- positive {p.token}: {p.reason}" for p in self.positive]
        lines += [f"- negative {p.token}: {p.reason}" for p in self.negative]
        if verbosity in ("detailed", "technical"):
            lines += [f"- not proposed {p.name}: {p.reason}" for p in self.skipped]
        lines += [f"- note: {n}" for n in self.notes]
        return "\n".join(lines) or "No embedding proposed."


def recommend_embeddings(entries: Iterable[EmbeddingEntry], analysis: Any = None, family: str = "sdxl",
                         max_negative: int = 2) -> EmbeddingAdvice:
    """Embeddings of ``family``'s base for the prompt of ``analysis`` (a PromptAnalysis, or None).

    Negative: up to ``max_negative`` negative embeddings of the family's base (its variant's
    first, then the most downloaded). Positive: embeddings whose trigger word or name the prompt
    says. Raises ParamsError for an unknown family.
    """
    from ..params import get_family

    profile = get_family(family)
    advice = EmbeddingAdvice(profile.id)
    entries = list(entries)
    if profile.group not in TI_BASES:
        advice.notes.append(f"{profile.label} has no CLIP text encoder that takes textual-inversion "
                            "embeddings in ComfyUI; none proposed")
        return advice
    negative_pass = profile.cfg > 1.0
    if not negative_pass:
        advice.notes.append(f"{profile.label} runs at CFG {profile.cfg:g}: no negative pass, so "
                            "negative embeddings would have no effect")
    text = str(getattr(analysis, "cleaned", "") or getattr(analysis, "prompt", "") or "").lower()
    in_prompt = {e.lower() for e in getattr(analysis, "embeddings", []) or []}
    variant = _family_variant(profile.id)
    negatives: list[tuple[tuple, EmbeddingEntry]] = []
    for entry in entries:
        why_not = _unusable(entry, profile.group, profile.label)
        if why_not:
            advice.skipped.append(EmbeddingPick(entry.name, entry.token, why_not))
            continue
        called = entry.token[len(IDENTIFIER):].lower()
        if called in in_prompt or Path(called).name in in_prompt:
            advice.skipped.append(EmbeddingPick(entry.name, entry.token, "already in the prompt"))
            continue
        if entry.negative:
            if negative_pass:
                negatives.append(((entry.variant != variant, -entry.downloads, entry.name.lower()), entry))
            continue
        said = _said_in(entry, text)
        if said:
            advice.positive.append(EmbeddingPick(entry.name, entry.token,
                                                 f"the prompt says {said}; {entry.arch_source}"))
    negatives.sort(key=lambda item: item[0])
    for rank, (_key, entry) in enumerate(negatives):
        if rank < max(0, max_negative):
            fit = f"made for {entry.variant}" if entry.variant and entry.variant == variant else \
                f"for {BASE_LABELS.get(entry.base, entry.base)}"
            advice.negative.append(EmbeddingPick(entry.name, entry.token,
                                                 f"negative embedding ({entry.negative_reason}), {fit} "
                                                 f"({entry.arch_source})"))
        else:
            advice.skipped.append(EmbeddingPick(entry.name, entry.token,
                                                f"negative embedding beyond the {max_negative} proposed"))
    return advice


def _unusable(entry: EmbeddingEntry, group: str, label: str) -> str:
    if entry.format == "pickle":
        return "pickle-based file: not read, so not proposed (convert it to .safetensors)"
    if not entry.readable:
        return "unreadable: " + (entry.problems[-1] if entry.problems else "see the scan")
    if not entry.callable:
        return "its name has a space, which ComfyUI's embedding:name cannot call"
    if entry.base == UNKNOWN:
        return "base architecture unknown (no 768/1024/1280 vectors, no sidecar)"
    if entry.base != group:
        return (f"made for {BASE_LABELS.get(entry.base, entry.base)} ({entry.arch_source}); {label} "
                "would skip it with a shape warning")
    if entry.vectors > MAX_VECTORS:
        return f"{entry.vectors} vectors, more than CLIP's {MAX_VECTORS}-token window"
    return ""


def _family_variant(family_id: str) -> str:
    return {"pony": "pony", "illustrious": "illustrious"}.get(family_id, "")


def _said_in(entry: EmbeddingEntry, text: str) -> str:
    """What in the prompt names the embedding: a trigger word, or its file name."""
    if not text:
        return ""
    for word in entry.triggers:
        if len(word) >= 3 and re.search(rf"(^|[^\w]){re.escape(word.lower())}($|[^\w])", text):
            return f"{word!r} (its trigger word)"
    stem = Path(entry.name).stem.lower()
    if len(stem) >= 4 and re.search(rf"(^|[^\w]){re.escape(stem)}($|[^\w])", text):
        return f"{stem!r} (its name)"
    return ""
