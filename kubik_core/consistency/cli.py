"""``kubik consistency``: do these pictures still look like the character?

The ``--json`` output (and ``--out``'s file) is a stable interface:
{"encoder", "crop", "threshold", "passed", "total",
 "images": [{"name", "score", "passed", "box", "crop"}],
 "calibration": {"method", "threshold", "calibrated_threshold", "loo_scores", "negative_scores",
                 "reference_low", "negative_high", "margin", "auc", "notes"},
 "references": [{"name", "loo_score", "crop"}], "negatives": [{"name", "score", "crop"}]}
and, with ``--character``, "character": {"name", "threshold_from", "saved_threshold"}.

``--character NAME`` takes the references (and the stored threshold) from a character preset of
``kubik characters``; ``--save-threshold`` stores the calibrated threshold in that preset, which
the Kubik Character node then hands to Kubik Consistency.
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
    p.add_argument("--references", nargs="+", default=None, metavar="PATH",
                   help="reference pictures of the character (files or folders; at least 2, 5+ is better)")
    p.add_argument("--character", default=None, metavar="NAME",
                   help="instead of --references: a character preset of `kubik characters`; its reference "
                        "pictures and its stored threshold are used (--threshold still overrides)")
    p.add_argument("--save-threshold", action="store_true",
                   help="with --character: calibrate afresh and store the calibrated threshold in the preset "
                        "(`kubik characters show NAME` shows it; the Kubik Character node outputs it)")
    p.add_argument("--registry", default=None, metavar="FILE",
                   help="with --character: the registry file (default as `kubik characters`: "
                        "$KUBIK_CHARACTERS_FILE, else ~/.local/share/kubik/characters.json)")
    p.add_argument("--input-dir", default=None, metavar="DIR",
                   help="with --character: ComfyUI's input folder, where the preset's reference pictures are "
                        "(default: $KUBIK_INPUT_DIR)")
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


def _preset(args):
    """(character, registry file, reference files) of ``--character``; CommandError for an unknown
    character, an unreadable registry, a preset with fewer than 2 pictures or a missing one."""
    import os

    from ..characters import CharacterError, PictureError, RegistryError, load_registry, reference_files
    from ..characters import registry_path as default_registry

    path = Path(args.registry).expanduser() if args.registry else default_registry(None)
    try:
        character, is_example = load_registry(path).character(args.character)
    except (CharacterError, RegistryError) as exc:
        raise CommandError(f"--character: {exc}") from None
    if args.save_threshold and is_example:
        raise CommandError(f"--save-threshold: {character.name!r} ships with KubikAI and cannot be changed; "
                           "add a character of your own (`kubik characters add`) to keep a threshold")
    if len(character.references) < 2:
        raise CommandError(f"--character {character.name}: {len(character.references)} reference picture(s); "
                           "give it at least 2 (5 or more calibrate better): `kubik characters set "
                           f"{character.name!r} --reference PICTURE --reference PICTURE`")
    try:
        files = reference_files(character, args.input_dir or os.environ.get("KUBIK_INPUT_DIR"), is_example)
    except PictureError as exc:
        raise CommandError(f"--character: {exc}") from None
    return character, path, files


def _consistency(args) -> int:
    from ..common.atomic import write_text_atomic
    from ..common.distributed import resolve_device
    from .encoders import load_encoder
    from .errors import ConsistencyError
    from .score import score_images

    out = Path(args.out) if args.out else None
    if out is not None and out.is_dir():
        raise CommandError(f"--out {args.out}: is a folder; name the .json file to write")
    if (args.references is None) == (args.character is None):
        raise CommandError("give the character's pictures either as --references PATH ... or as --character "
                           "NAME (a preset of `kubik characters`), not both")
    if args.save_threshold and args.character is None:
        raise CommandError("--save-threshold stores the threshold in a character preset; name it with --character")
    if args.save_threshold and args.threshold is not None:
        raise CommandError("--save-threshold stores the calibrated threshold; leave out --threshold (or store a "
                           "threshold of your own with `kubik characters set NAME --threshold X`)")
    character = registry = None
    threshold, threshold_from = args.threshold, "option"
    if args.character is None:
        references = _load(_image_paths(args.references, "--references"), "--references")
    else:
        character, registry, files = _preset(args)
        references = _load(files, "--character")
        if threshold is None and not args.save_threshold and character.threshold is not None:
            threshold, threshold_from = character.threshold, "preset"
    if threshold is None:
        threshold_from = "calibrated"
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
        report = score_images(encoder, references, images, negatives, args.crop, masks, threshold)
    except ConsistencyError as exc:
        raise CommandError(f"{exc}") from None
    except ValueError as exc:  # the device
        raise CommandError(" ".join(str(exc).split())) from None
    data = report.to_dict()
    if character is not None:
        saved = _save_threshold(character.name, registry, report.calibration) if args.save_threshold else None
        data["character"] = {"name": character.name, "threshold_from": threshold_from, "saved_threshold": saved}
    text = json.dumps(data, indent=1)
    if out is not None:
        try:
            write_text_atomic(out, text + "\n")
        except OSError as exc:
            raise CommandError(f"--out {args.out}: cannot write ({exc.strerror or exc})") from None
    if args.json:
        print(text)
    else:
        print(report.summary())
        if character is not None:
            print(_character_line(data["character"]))
    return 0


def _save_threshold(name: str, registry: Path, calibration) -> float:
    """Store the calibrated threshold in the preset (atomically; a registry that became unreadable
    is left as it is). The node reads 0 as "calibrate", so only a threshold above 0 is kept."""
    from ..characters import CharacterError, RegistryError, record_threshold

    value = round(calibration.calibrated_threshold, 6)
    if not 0.0 < value <= 1.0:
        raise CommandError(f"--save-threshold: the calibrated threshold {value:.3f} is not above 0, so these "
                           "references do not resemble each other for this encoder; nothing was saved "
                           "(use closer pictures or another encoder)")
    try:
        record_threshold(registry, name, value)
    except (CharacterError, RegistryError) as exc:
        raise CommandError(f"--save-threshold: {exc}") from None
    return value


def _character_line(info: dict) -> str:
    if info["saved_threshold"] is not None:
        return f"character {info['name']}: saved threshold {info['saved_threshold']:.3f} in its preset"
    return f"character {info['name']}: threshold {info['threshold_from']}"
