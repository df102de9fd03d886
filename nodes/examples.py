"""Kubik Example Image: pictures that ship with the pack, for templates that run on any ComfyUI.

Core Load Image reads ComfyUI's input folder, which differs between installations, so a template
that names a file there fails on most of them. This node loads one of the pictures in the pack's
own example_pictures/ folder instead (see its README for their sources), with Load Image's
outputs. A name must be one of that folder's files as listed, so nothing else is ever read.
"""
from __future__ import annotations

from pathlib import Path

PICTURES_DIR = Path(__file__).resolve().parents[1] / "example_pictures"
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
DEFAULT_PICTURE = "digit_7.png"


def picture_names() -> list[str]:
    """The pictures in example_pictures/: plain files (no links) with a picture suffix; none when
    the folder is gone or unreadable (the node stays in the editor; running it says what to do)."""
    try:
        return sorted(p.name for p in PICTURES_DIR.iterdir()
                      if p.suffix.lower() in PICTURE_SUFFIXES and p.is_file() and not p.is_symlink())
    except OSError:  # missing, replaced by a file, or unreadable
        return []


def load_picture(name):
    """(IMAGE [1,H,W,3] in 0..1, MASK [1,H,W]) for the example picture ``name``.

    As core Load Image: the MASK is 1 where the picture is transparent (1 - alpha); a picture
    without transparency gets an all-zero mask of its own size (Load Image gives 64x64 there).
    """
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    names = picture_names()
    if not isinstance(name, str) or name not in names:
        shown = repr(name[:60]) if isinstance(name, str) else type(name).__name__
        raise ValueError(f"picture: {shown} is not one of the pack's example pictures "
                         f"({', '.join(names) or 'none found: reinstall the pack'}); pick one from the list")
    try:
        with Image.open(PICTURES_DIR / name) as opened:
            picture = ImageOps.exif_transpose(opened)
            picture.load()
    except OSError as exc:
        raise ValueError(f"picture: {name} cannot be read ({exc.__class__.__name__}); "
                         "reinstall the pack to restore its example pictures") from None
    rgb = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    if "A" in picture.getbands() or (picture.mode == "P" and "transparency" in picture.info):
        alpha = np.asarray(picture.convert("RGBA").getchannel("A"), dtype=np.float32) / 255.0
        mask = 1.0 - alpha
    else:
        mask = np.zeros(rgb.shape[:2], dtype=np.float32)
    return torch.from_numpy(rgb)[None], torch.from_numpy(mask)[None]


class KubikExampleImage:
    DESCRIPTION = ("Loads one of the example pictures that ship with KubikAI (digits for the demo "
                   "classifier, renders for the 3D demo model, a photo), so a workflow runs on any "
                   "ComfyUI whatever its input folder holds. Outputs as core Load Image.")
    CATEGORY = "KubikAI/examples"
    FUNCTION = "load"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("image", "mask")
    OUTPUT_TOOLTIPS = (
        "The picture as an IMAGE batch of one [1,H,W,3], RGB in 0..1.",
        "As Load Image's MASK [1,H,W]: 1 where the picture is transparent (the background of the "
        "shape renders), 0 elsewhere; all 0 for pictures without transparency.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        names = picture_names()
        options = {"tooltip": "digit_*: handwritten digits held out from the demo classifier's "
                              "training; shape_*: renders held out from the 3D demo model's "
                              "training; photo_*: a photograph. Sources: example_pictures/README.md."}
        if DEFAULT_PICTURE in names:
            options["default"] = DEFAULT_PICTURE
        return {"required": {"picture": (names, options)}}

    def load(self, picture):
        return load_picture(picture)


NODE_CLASS_MAPPINGS = {"KubikExampleImage": KubikExampleImage}
NODE_DISPLAY_NAME_MAPPINGS = {"KubikExampleImage": "Kubik Example Image"}
