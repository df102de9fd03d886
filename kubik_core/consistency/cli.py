"""``kubik consistency``: do these pictures still look like the character?

The ``--json`` output (and ``--out``'s file) is a stable interface:
{"encoder", "crop", "threshold", "passed", "total",
 "images": [{"name", "score", "passed", "box", "crop"}],
 "calibration": {"method", "threshold", "calibrated_threshold", "loo_scores", "negative_scores",
                 "reference_low", "negative_high", "margin", "auc", "notes"},
 "references": [{"name", "loo_score", "crop"}], "negatives": [{"name", "score", "crop"}]}
"""
from __future__ import annotations

import json
from pathlib import Path

from ..common.commands import CommandError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
MAX_FILES = 10000


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "consistency", help="score pictures against a character's reference pictures",
        description="Scores each picture by the cosine similarity of its image embedding (CLIP vision "
                    "or DINOv2, from a local folder) to the mean of the references' embeddings, after "
                    "cropping to the character. The pass threshold is calibrated per character from "
                    "the references' leave-one-out scores and, when given, pictures of other subjects.")
    p.add_argument("--references", nargs="+", required=True, metavar="PATH",
                   help="reference pictures of the character (files or folders; at least 2, 5+ is better)")
    p.add_argument("--images", nargs="+", required=True, metavar="PATH", help="pictures to score (files or folders)")
    p.add_argument("--negatives", nargs="+", default=[], metavar="PATH",
                   help="pictures of other subjects: the negative control for the threshold")
    p.add_argument("--encoder", required=True, metavar="PATH",
                   help="CLIP vision or DINOv2 model: a folder with config.json and model.safetensors "
                        "(transformers layout), or that model.safetensors; never downloaded")
    p.add_argument("--crop", choices=["smart", "center", "none"], default="smart",
                   help="how to find the character without a mask: saliency crop (smart), centre "
                        "square, or the whole picture (default smart)")
    p.add_argument("--masks", metavar="FOLDER", default=None,
                   help="masks of the scored pictures, named like them (cat.png for cat.jpg; white = "
                        "character, or the alpha channel): the crop is the mask's box")
    p.add_argument("--threshold", type=float, default=None,
                   help="use this threshold instead of the calibrated one (the calibration is still reported)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (auto)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the JSON report to FILE")
    p.set_defaults(func=_consistency)


def _image_paths(paths: list[str], flag: str) -> list[Path]:
    """The files named, and the pictures (by suffix, sorted) directly inside the folders named."""
    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not inside:
                raise CommandError(f"{flag} {text}: the folder holds no pictures ({', '.join(IMAGE_SUFFIXES)})")
            found += inside
        elif path.exists():
            found.append(path)
        else:
            raise CommandError(f"{flag} {text}: no such file or folder")
        if len(found) > MAX_FILES:
            raise CommandError(f"{flag}: more than {MAX_FILES} pictures; score them in parts")
    return found


def _load(paths: list[Path], flag: str):
    from ..classify.images import ImageError, load_image

    try:
        return [(str(path), load_image(path)) for path in paths]
    except ImageError as exc:
        raise CommandError(f"{flag}: {exc}") from None


def _mask_for(image_path: Path, folder: Path, size: tuple[int, int]):
    """The mask of one picture as a float array (0..1), or None when the folder has none for it."""
    import numpy as np
    from PIL import Image

    for suffix in IMAGE_SUFFIXES:
        candidate = folder / (image_path.stem + suffix)
        if candidate.is_file():
            break
    else:
        return None
    try:
        with Image.open(candidate) as raw:
            raw.load()
            mask = raw.getchannel("A") if "A" in raw.getbands() else raw.convert("L")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CommandError(f"--masks: {candidate}: not a readable picture ({' '.join(str(exc).split())[:120]})") from None
    if mask.size != size:
        raise CommandError(f"--masks: {candidate} is {mask.width}x{mask.height} but {image_path} is "
                           f"{size[0]}x{size[1]}; a mask must have its picture's size")
    return np.asarray(mask, dtype=np.float32) / 255.0


def _consistency(args) -> int:
    from ..common.atomic import write_text_atomic
    from ..common.distributed import resolve_device
    from .encoders import load_encoder
    from .errors import ConsistencyError
    from .score import score_images

    out = Path(args.out) if args.out else None
    if out is not None and out.is_dir():
        raise CommandError(f"--out {args.out}: is a folder; name the .json file to write")
    references = _load(_image_paths(args.references, "--references"), "--references")
    if len(references) < 2:
        raise CommandError(f"--references: {len(references)} picture; give at least 2 pictures of the "
                           "character (5 or more calibrate better)")
    image_paths = _image_paths(args.images, "--images")
    images = _load(image_paths, "--images")
    negatives = _load(_image_paths(args.negatives, "--negatives"), "--negatives") if args.negatives else []
    masks = None
    if args.masks is not None:
        folder = Path(args.masks)
        if not folder.is_dir():
            raise CommandError(f"--masks {args.masks}: not a folder")
        masks = [_mask_for(path, folder, image.size) for path, (_, image) in zip(image_paths, images)]
    try:
        device = resolve_device(args.device)
        encoder = load_encoder(args.encoder, device)
        report = score_images(encoder, references, images, negatives, args.crop, masks, args.threshold)
    except ConsistencyError as exc:
        raise CommandError(f"{exc}") from None
    except ValueError as exc:  # the device
        raise CommandError(" ".join(str(exc).split())) from None
    text = json.dumps(report.to_dict(), indent=1)
    if out is not None:
        try:
            write_text_atomic(out, text + "\n")
        except OSError as exc:
            raise CommandError(f"--out {args.out}: cannot write ({exc.strerror or exc})") from None
    print(text if args.json else report.summary())
    return 0
