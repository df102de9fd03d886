"""Training pictures and their captions: a folder or a JSONL manifest, SDXL aspect-ratio buckets,
repeats, tag shuffling and caption dropout.

- Folder: every picture (png, jpg, jpeg, webp, bmp) with a caption in ``<stem>.txt`` beside it;
  a picture without one is captioned "<trigger>, <caption>" where the caption comes from a
  captioning model (captioner.py, --caption-model) or else is the file's name in words.
- Manifest: one JSON object a line, ``{"image": "relative/path.png", "caption": "..."}``
  (caption optional, as above); paths stay inside the manifest's folder.
- Buckets: sizes in multiples of 64 whose area is at most ``resolution``²; each picture goes to
  the bucket nearest its aspect ratio, resized to cover it and centre-cropped. A picture is never
  enlarged by more than ``max_upscale``: a small one gets a smaller bucket of its own shape.
Bad input raises DatasetError naming the file and the fix, before any training starts.
"""
from __future__ import annotations

import math
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..common.atomic import write_text_atomic
from ..common.bounded_json import BoundedJSONError, loads as bounded_loads

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_CAPTION_BYTES = 16 * 1024          # a caption is a sentence or a tag list, never a book
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 64 * 1024 * 1024    # 8k x 8k: larger files are decompression bombs, not photos
BUCKET_STEP = 64


class DatasetError(ValueError):
    """Training data that cannot be used; the message names the file and what would fix it."""


@dataclass(frozen=True)
class Item:
    """One training picture: its path, caption, original size and bucket (width, height)."""

    path: Path
    caption: str
    size: tuple[int, int]
    bucket: tuple[int, int]


def caption_from_name(stem: str, trigger: str) -> str:
    words = " ".join(re.split(r"[_\-\s.]+", stem)).strip()
    return ", ".join(part for part in (trigger.strip(), words) if part)


def _read_caption(path: Path, shown: str) -> str:
    if path.stat().st_size > MAX_CAPTION_BYTES:
        raise DatasetError(f"{shown}: the caption is {path.stat().st_size} bytes, more than the "
                           f"{MAX_CAPTION_BYTES} a caption may have; shorten it")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"{shown}: the caption is not UTF-8 text; save it as UTF-8") from None
    if "\x00" in text:
        raise DatasetError(f"{shown}: the caption holds NUL bytes; it is not a text file")
    return " ".join(text.split())


def _inside(root: Path, relative: str, shown: str) -> Path:
    if not relative.strip() or "\x00" in relative:
        raise DatasetError(f"{shown}: {relative!r} is not a file name; give the picture's path "
                           "relative to the data folder")
    candidate = (root / relative).resolve()
    if os.path.isabs(relative) or not candidate.is_relative_to(root):
        raise DatasetError(f"{shown}: {relative!r} is outside the data folder; pictures and captions must "
                           "stay inside it")
    return candidate


def _image_size(path: Path, shown: str) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DatasetError(f"{shown}: {width}x{height} pixels is more than this trainer "
                                   f"reads ({MAX_IMAGE_PIXELS} pixels); scale it down")
            image.verify()
    except DatasetError:
        raise
    except Exception as exc:  # PIL raises many types for a broken file
        raise DatasetError(f"{shown}: not a readable image ({type(exc).__name__}); replace or "
                           "remove the file") from None
    return width, height


def make_buckets(resolution: int, max_ratio: float = 4.0) -> list[tuple[int, int]]:
    """(width, height) sizes in steps of 64 with area <= resolution² and sides at most
    ``max_ratio`` apart; for each width the tallest height that fits."""
    if resolution < BUCKET_STEP or resolution % BUCKET_STEP:
        raise DatasetError(f"--resolution must be a multiple of {BUCKET_STEP} (e.g. 1024), got {resolution}")
    area, buckets = resolution * resolution, []
    for width in range(BUCKET_STEP, 8 * resolution + 1, BUCKET_STEP):
        height = min(area // width // BUCKET_STEP * BUCKET_STEP, 8 * resolution)
        if height >= BUCKET_STEP and max(width, height) / min(width, height) <= max_ratio:
            buckets.append((width, height))
    return buckets


def choose_bucket(size: tuple[int, int], buckets: list[tuple[int, int]], max_upscale: float) -> tuple[int, int]:
    """The bucket nearest ``size``'s aspect ratio, or, when filling it would enlarge the picture
    by more than ``max_upscale``, a bucket of the picture's own shape that needs no more."""
    width, height = size
    ratio = math.log(width / height)
    bucket = min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - ratio), -b[0] * b[1]))
    if max(bucket[0] / width, bucket[1] / height) <= max_upscale:
        return bucket
    scale = max_upscale
    small = (int(width * scale) // BUCKET_STEP * BUCKET_STEP, int(height * scale) // BUCKET_STEP * BUCKET_STEP)
    if min(small) < BUCKET_STEP:
        raise ValueError("too small")
    return small


def load_items(source: str | os.PathLike, trigger: str = "", resolution: int = 1024,
               max_upscale: float = 1.0, caption_missing: Callable[[list[Path]], list[str]] | None = None,
               write_captions: bool = False) -> list[Item]:
    """Every picture of ``source`` (a folder, or a .jsonl manifest) with caption and bucket.

    A picture without a caption gets "<trigger>, <caption>", the caption coming from
    ``caption_missing(paths)`` (one call for all of them, after every picture has been checked:
    a captioning model) or else from the file's name. With ``write_captions`` (folders only) those
    captions are saved as ``<stem>.txt`` beside the pictures, so later runs and the user see them.
    """
    source = Path(source)
    if not source.exists():
        raise DatasetError(f"{source}: no such folder or manifest; pass the folder of training pictures")
    if write_captions and not source.is_dir():
        raise DatasetError(f"{source.name}: --write-captions writes <stem>.txt beside the pictures of a "
                           "folder; a manifest keeps its captions in its own lines: drop the flag")
    buckets = make_buckets(resolution)
    if source.is_dir():
        root = source.resolve()
        entries = []
        for path in sorted(root.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            _inside(root, path.name, path.name)            # a symlink out of the folder is refused
            caption_file = path.with_suffix(".txt")
            caption = ""
            if caption_file.is_file():
                caption = _read_caption(_inside(root, caption_file.name, caption_file.name), caption_file.name)
            entries.append((path.resolve(), path.name, caption))
    else:
        root = source.resolve().parent
        entries = _manifest_entries(source, root)
    if not entries:
        raise DatasetError(f"{source}: no pictures found ({', '.join(IMAGE_SUFFIXES)}); add some or "
                           "check the folder")
    items = []
    for path, shown, caption in entries:
        size = _image_size(path, shown)
        try:
            bucket = choose_bucket(size, buckets, max_upscale)
        except ValueError:
            raise DatasetError(f"{shown}: {size[0]}x{size[1]} is too small for a {BUCKET_STEP}-pixel "
                               f"bucket without enlarging it more than --max-upscale {max_upscale}; "
                               "raise --max-upscale or use a larger picture") from None
        items.append(Item(path, caption, size, bucket))
    missing = [index for index, item in enumerate(items) if not item.caption]
    made = caption_missing([items[i].path for i in missing]) if missing and caption_missing else []
    for number, index in enumerate(missing):
        item = items[index]
        text = made[number] if number < len(made) else ""
        caption = ", ".join(part for part in (trigger.strip(), text) if part) if text \
            else caption_from_name(item.path.stem, trigger)
        items[index] = replace(item, caption=caption)
        if write_captions and not item.path.with_suffix(".txt").exists():   # an empty .txt stays the user's
            write_text_atomic(item.path.with_suffix(".txt"), caption + "\n")
    return items


def _manifest_entries(manifest: Path, root: Path) -> list[tuple[Path, str, str]]:
    if manifest.stat().st_size > MAX_MANIFEST_BYTES:
        raise DatasetError(f"{manifest.name}: the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        lines = manifest.read_bytes().decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise DatasetError(f"{manifest.name}: the manifest is not UTF-8 text") from None
    entries = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{manifest.name} line {number}"
        try:
            record = bounded_loads(line, max_depth=4, max_bytes=MAX_CAPTION_BYTES * 2)
        except BoundedJSONError as exc:
            raise DatasetError(f"{where}: {exc}") from None
        if not isinstance(record, dict) or not isinstance(record.get("image"), str):
            raise DatasetError(f'{where}: each line must be an object with "image" (a relative path) '
                               'and optionally "caption"')
        caption = record.get("caption", "")
        if not isinstance(caption, str) or len(caption.encode()) > MAX_CAPTION_BYTES:
            raise DatasetError(f'{where}: "caption" must be text of at most {MAX_CAPTION_BYTES} bytes')
        path = _inside(root, record["image"], where)
        if not path.is_file():
            raise DatasetError(f"{where}: {record['image']!r} does not exist next to the manifest")
        entries.append((path, record["image"], " ".join(caption.split())))
    return entries


def tag_frequency(items: list[Item]) -> dict[str, int]:
    """How often each comma-separated tag occurs (kohya's ss_tag_frequency, per data folder)."""
    return dict(Counter(tag.strip() for item in items for tag in item.caption.split(",") if tag.strip()))


def caption_variant(caption: str, rng: random.Random, shuffle: bool, keep_tokens: int, dropout: float) -> str:
    """The caption one step trains on: empty with probability ``dropout``; otherwise, with
    ``shuffle``, its comma-separated tags after the first ``keep_tokens`` in random order."""
    if dropout and rng.random() < dropout:
        return ""
    if not shuffle:
        return caption
    tags = [tag.strip() for tag in caption.split(",") if tag.strip()]
    kept, rest = tags[:keep_tokens], tags[keep_tokens:]
    rng.shuffle(rest)
    return ", ".join(kept + rest)


def batches_for_epoch(items: list[Item], repeats: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Item indices per micro-batch for one epoch: each item ``repeats`` times, batches drawn
    from one bucket each, in an order fixed by (seed, epoch) so that a resumed run replays it."""
    rng = random.Random(f"{seed}:{epoch}")
    by_bucket: dict[tuple[int, int], list[int]] = {}
    order = [i for i in range(len(items)) for _ in range(repeats)]
    rng.shuffle(order)
    for index in order:
        by_bucket.setdefault(items[index].bucket, []).append(index)
    batches = [group[i:i + batch_size] for group in by_bucket.values() for i in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def load_pixels(item: Item):
    """The picture resized to cover its bucket and centre-cropped, as a [3, H, W] tensor in
    [-1, 1], with SDXL's size conditioning (original height, width, crop top, crop left)."""
    import numpy as np
    import torch
    from PIL import Image

    width, height = item.bucket
    with Image.open(item.path) as image:
        image = image.convert("RGB")
        scale = max(width / image.width, height / image.height)
        resized = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
        image = image.resize(resized, Image.Resampling.LANCZOS)
        left, top = (resized[0] - width) // 2, (resized[1] - height) // 2
        image = image.crop((left, top, left + width, top + height))
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)
    return pixels.contiguous(), (item.size[1], item.size[0], top, left)
