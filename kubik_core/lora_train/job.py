"""A training a server runs for a user who names things in a request (the ComfyUI node).

What a request names is checked before any process starts: the data folder stays inside the
folders the server allows (ComfyUI's input folder, and folders its owner lists), the LoRA's
name is a plain file name inside the loras folder, and an existing LoRA is never replaced unless
the request says so. Errors name the input and the fix, and never show the server's absolute
paths (they travel to the browser).
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

# What to do when the LoRA (or an unfinished run of it) already exists.
EXISTING_CHOICES = ("keep", "continue training", "start over")
_NAME_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _\-.()+]{0,99}")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def lora_name_parts(name: str, input_name: str = "lora_name") -> tuple[list[str], str]:
    """(subfolders, file stem) of a LoRA name such as ``characters/alice`` (``.safetensors``
    may be typed or not); ValueError naming ``input_name`` for anything else."""
    text = name.strip() if isinstance(name, str) else ""
    if text.lower().endswith(".safetensors"):
        text = text[: -len(".safetensors")]
    parts = text.replace("\\", "/").split("/")
    if not text or len(parts) > 4 or not all(_NAME_PART.fullmatch(p) and not p.endswith((".", " "))
                                             and p.split(".")[0].lower() not in _RESERVED for p in parts):
        raise ValueError(f"{input_name}: {str(name)[:80]!r} is not a usable LoRA name; use letters, digits, "
                         "spaces, '_', '-', '.' (at most 100 characters, optionally in subfolders like "
                         "'characters/alice')")
    return parts[:-1], parts[-1]


def resolve_inside(text: str, roots: list[str], input_name: str, hint: str) -> Path:
    """The existing folder or file ``text`` names: relative to the first root, or absolute
    inside one of ``roots`` (links resolved first). ValueError naming ``input_name``, with
    ``hint`` saying where it may be, otherwise."""
    typed = text.strip() if isinstance(text, str) else ""
    shown = repr(typed[:200])
    if not typed or "\x00" in typed:
        raise ValueError(f"{input_name}: empty; {hint}")
    real_roots = [os.path.realpath(r) for r in roots if r]
    candidate = os.path.realpath(typed if os.path.isabs(typed) else os.path.join(real_roots[0], typed)) \
        if real_roots else None
    if candidate is None or not any(os.path.commonpath([root, candidate]) == root for root in real_roots):
        raise ValueError(f"{input_name}: {shown} is outside the folders training data may come from; {hint}")
    if not os.path.exists(candidate):
        raise ValueError(f"{input_name}: {shown} does not exist; {hint}")
    return Path(candidate)


def model_folder_inside(name: str, roots: list[str], input_name: str, kind: str, hint: str) -> Path:
    """The model folder a list entry ``name`` (e.g. ``blip`` or ``captioners/blip``) names in
    the first of ``roots`` (a ComfyUI model folder's paths) that has it, links resolved, as a
    folder holding config.json. ValueError naming ``input_name`` otherwise: a name that is not a
    plain relative folder name ('..', absolute, drive letters), one whose link leads out of
    ``roots``, or one no root has. ``kind`` is the folder shown to the user, ``hint`` the fix."""
    typed = name.strip() if isinstance(name, str) else ""
    shown = repr(typed[:120]) if isinstance(name, str) else repr(type(name).__name__)
    parts = typed.replace("\\", "/").split("/")
    if (not typed or "\x00" in typed or ":" in typed or len(parts) > 2
            or any(part in ("", ".", "..") or part != part.strip() for part in parts)):
        raise ValueError(f"{input_name}: {shown} is not the name of a folder in {kind}; choose one from the "
                         f"list ({hint})")
    for root in (os.path.realpath(r) for r in roots if r):
        candidate = os.path.realpath(os.path.join(root, *parts))
        if os.path.commonpath([root, candidate]) != root:
            raise ValueError(f"{input_name}: {shown} leads out of {kind} through a link; choose a folder that "
                             "is really there")
        if os.path.isfile(os.path.join(candidate, "config.json")):
            return Path(candidate)
    raise ValueError(f"{input_name}: {shown} is not a model folder in {kind} (none with config.json); {hint}")


def output_folder(loras_root: str, subfolders: list[str]) -> Path:
    """``loras_root``/``subfolders``, refused when a link there leads out of the loras folder."""
    root = os.path.realpath(loras_root)
    folder = os.path.realpath(os.path.join(root, *subfolders))
    if os.path.commonpath([root, folder]) != root:
        raise ValueError("lora_name: its subfolder leads out of the loras folder; use a plain name")
    return Path(folder)


def prepare_output(folder: Path, stem: str, existing: str, input_name: str = "existing_lora") -> None:
    """Apply the ``existing`` choice to ``folder``/``stem``.* before a run:

    - "keep": an existing LoRA is an error (nothing is replaced); an unfinished run (a resume
      file without its LoRA) continues.
    - "continue training": the saved run continues up to the new step count and the LoRA is
      replaced by the longer-trained one.
    - "start over": the LoRA, its sidecar, loss curve, samples and saved run are deleted first.
    """
    if existing not in EXISTING_CHOICES:
        raise ValueError(f"{input_name}: {existing!r} is not one of {', '.join(EXISTING_CHOICES)}")
    lora = folder / f"{stem}.safetensors"
    resume = folder / f"{stem}.resume"
    if existing == "keep" and lora.exists():
        raise ValueError(f"lora_name: {stem}.safetensors already exists in the loras folder; choose another "
                         f"name, or set {input_name} to 'continue training' or 'start over'")
    if existing == "continue training" and lora.exists() and not resume.exists():
        raise ValueError(f"{input_name}: {stem}.safetensors has no saved run ({stem}.resume) to continue; "
                         "choose 'start over' to replace it, or another lora_name")
    if existing == "start over":
        for path in (lora, resume, folder / f"{stem}.metadata.json", folder / f"{stem}_loss.png"):
            path.unlink(missing_ok=True)
        samples = folder / f"{stem}_samples"
        if samples.is_dir() and not samples.is_symlink():
            shutil.rmtree(samples)


def redact(text: str, paths: dict[str, str]) -> str:
    """``text`` with each absolute path of ``paths`` (path -> what to show instead) replaced,
    longest first, so a child's error line shows no server folders."""
    for path, shown in sorted(paths.items(), key=lambda item: -len(item[0])):
        if path:
            text = text.replace(path, shown)
    return text
