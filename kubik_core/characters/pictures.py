"""A character's reference pictures as one IMAGE batch [B, size, size, 3] in 0..1.

A batch needs one size, and image encoders (CLIP, DINOv2) look at a centred square anyway, so
each picture is turned upright (EXIF), cropped to its centred square and resized to ``size``.
Files are opened without blocking and only when they are regular files (a FIFO or device named
as a picture is refused), and a picture larger than MAX_PIXELS is refused before decoding.
"""
from __future__ import annotations

import os
import warnings

from pathlib import Path

from ..common.files import NotRegularFileError, open_regular

MAX_PIXELS = 64 * 1024 * 1024
# The examples' pictures ship in the pack's example_pictures/ folder, never in the input folder.
EXAMPLE_PICTURES_DIR = Path(__file__).resolve().parents[2] / "example_pictures"


class PictureError(ValueError):
    """A reference picture that cannot be used; the message names it (never its server path)."""


def load_square(path: str | os.PathLike, label: str, size: int):
    """One picture as a float32 tensor [size, size, 3] in 0..1; PictureError names ``label``."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    try:
        with open_regular(path) as handle, warnings.catch_warnings():
            # PIL warns from 89 megapixels on; MAX_PIXELS refuses those pictures below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(handle) as opened:
                if opened.width * opened.height > MAX_PIXELS:
                    raise PictureError(f"{label} is {opened.width}x{opened.height} pixels, more than "
                                       f"{MAX_PIXELS // 2**20} megapixels; use a smaller copy")
                picture = ImageOps.exif_transpose(opened).convert("RGB")
    except PictureError:
        raise
    except FileNotFoundError:
        raise PictureError(f"{label} does not exist") from None
    except NotRegularFileError:
        raise PictureError(f"{label} is not a regular file") from None
    except Image.DecompressionBombError:   # PIL's own bound, far above MAX_PIXELS
        raise PictureError(f"{label} has more than {MAX_PIXELS // 2**20} megapixels; use a smaller copy") from None
    except (OSError, ValueError) as exc:
        raise PictureError(f"{label} cannot be read as a picture ({type(exc).__name__})") from None
    side = min(picture.size)
    left, top = (picture.width - side) // 2, (picture.height - side) // 2
    square = picture.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(square, dtype=np.float32) / 255.0)


def load_batch(paths: list[tuple[str, str]], size: int):
    """(path, label) pairs as an IMAGE batch [B, size, size, 3]; an empty batch when there are none."""
    import torch

    if not paths:
        return torch.zeros((0, size, size, 3), dtype=torch.float32)
    return torch.stack([load_square(path, label, size) for path, label in paths])


def reference_files(character, input_dir: str | os.PathLike | None, is_example: bool = False,
                    input_shown_as: str | None = None) -> list[Path]:
    """The files of ``character``'s reference pictures: inside ``input_dir`` (ComfyUI's input
    folder), or in the pack's example_pictures/ for a character that ships with the pack.

    Each must be a file that stays inside its folder once links are followed; PictureError names
    the first that is not, and the fix. ``input_shown_as`` is how the message names the input
    folder (the node says "ComfyUI's input folder": its errors reach the editor, never a path).
    """
    if is_example:
        root, where = EXAMPLE_PICTURES_DIR, "the pack's example_pictures folder (reinstall KubikAI)"
    elif input_dir:
        root, where = Path(input_dir), input_shown_as or f"the input folder {input_dir}"
    else:
        raise PictureError(f"the references of {character.name!r} are pictures in ComfyUI's input folder; "
                           "name that folder (--input-dir, or set KUBIK_INPUT_DIR)")
    real_root = os.path.realpath(root)
    found = []
    for name in character.references:
        real = os.path.realpath(os.path.join(real_root, name))
        if os.path.commonpath([real_root, real]) != real_root or not os.path.isfile(real):
            raise PictureError(f"reference picture {name[:80]!r} of {character.name!r} is not a file in "
                               f"{where}; copy it there, or change the character's references "
                               "(`kubik characters set NAME --reference PICTURE`)")
        found.append(root / name)
    return found
