"""Training data for kubik lora train: buckets, captions, repeats, manifests (no model needed)."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
from PIL import Image

from kubik_core.lora_train import dataset


def _picture(path, width, height, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def test_sdxl_buckets_are_multiples_of_64_within_the_area():
    buckets = dataset.make_buckets(1024)
    assert (1024, 1024) in buckets and (832, 1216) in buckets and (1216, 832) in buckets
    assert all(w % 64 == 0 and h % 64 == 0 and w * h <= 1024 * 1024 for w, h in buckets)
    assert all(max(w, h) / min(w, h) <= 4 for w, h in buckets)


def test_a_picture_goes_to_the_nearest_aspect_and_is_never_enlarged_past_the_limit():
    buckets = dataset.make_buckets(1024)
    assert dataset.choose_bucket((1536, 1024), buckets, 1.0) == (1216, 832)
    assert dataset.choose_bucket((3000, 3000), buckets, 1.0) == (1024, 1024)
    # 300x200 would need 4x enlargement for a 1 MP bucket: it gets its own 256x192 bucket ...
    assert dataset.choose_bucket((300, 200), buckets, 1.0) == (256, 192)
    # ... or, allowed to grow 2x, a 576x384 one (still below the 1 MP bucket).
    assert dataset.choose_bucket((300, 200), buckets, 2.0) == (576, 384)
    with pytest.raises(ValueError):
        dataset.choose_bucket((40, 40), buckets, 1.0)


def test_folder_captions_come_from_txt_files_or_the_trigger_and_file_name(tmp_path):
    _picture(tmp_path / "red_dress-01.png", 512, 256)
    _picture(tmp_path / "portrait.jpg", 256, 512, seed=1)
    (tmp_path / "portrait.txt").write_text("kbk woman,  smiling\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not a picture")
    items = dataset.load_items(tmp_path, trigger="kbk", resolution=256)
    captions = {item.path.name: item.caption for item in items}
    assert captions == {"portrait.jpg": "kbk woman, smiling", "red_dress-01.png": "kbk, red dress 01"}
    assert {item.path.name: item.bucket for item in items} == {"portrait.jpg": (192, 320),
                                                                "red_dress-01.png": (320, 192)}


def test_a_jsonl_manifest_names_pictures_relative_to_its_folder(tmp_path):
    (tmp_path / "pics").mkdir()
    _picture(tmp_path / "pics" / "a.png", 128, 128)
    _picture(tmp_path / "pics" / "b_photo.png", 128, 128, seed=2)
    manifest = tmp_path / "train.jsonl"
    manifest.write_text(json.dumps({"image": "pics/a.png", "caption": "kbk, red"}) + "\n\n"
                        + json.dumps({"image": "pics/b_photo.png"}) + "\n", encoding="utf-8")
    items = dataset.load_items(manifest, trigger="kbk", resolution=128)
    assert [(i.path.name, i.caption, i.bucket) for i in items] == [
        ("a.png", "kbk, red", (128, 128)), ("b_photo.png", "kbk, b photo", (128, 128))]


def test_tag_shuffle_keeps_the_first_tags_and_dropout_empties_that_share():
    caption = "kbk, red dress, smiling, outdoors, sunny"
    rng = random.Random(0)
    variants = [dataset.caption_variant(caption, rng, True, 1, 0.0) for _ in range(50)]
    assert all(v.startswith("kbk, ") for v in variants)
    assert all(sorted(v.split(", ")) == sorted(caption.split(", ")) for v in variants)
    assert len(set(variants)) > 5
    assert dataset.caption_variant(caption, rng, False, 1, 0.0) == caption
    dropped = sum(dataset.caption_variant(caption, rng, False, 1, 0.3) == "" for _ in range(2000))
    assert 500 < dropped < 700


def test_each_epoch_shows_every_picture_repeats_times_in_single_bucket_batches(tmp_path):
    items = [dataset.Item(tmp_path / f"{i}.png", "c", (64, 64), (64, 64) if i % 2 else (128, 64))
             for i in range(5)]
    batches = dataset.batches_for_epoch(items, repeats=3, batch_size=2, seed=7, epoch=0)
    seen = sorted(i for batch in batches for i in batch)
    assert seen == sorted(list(range(5)) * 3)
    assert all(len({items[i].bucket for i in batch}) == 1 for batch in batches)
    assert batches == dataset.batches_for_epoch(items, 3, 2, 7, 0)       # a resume replays it
    assert batches != dataset.batches_for_epoch(items, 3, 2, 7, 1)


def test_pixels_are_cropped_to_the_bucket_with_sdxl_size_conditioning(tmp_path):
    path = _picture(tmp_path / "wide.png", 300, 200)
    item = dataset.Item(path, "c", (300, 200), (256, 192))
    pixels, (height, width, top, left) = dataset.load_pixels(item)
    assert pixels.shape == (3, 192, 256) and -1.0 <= float(pixels.min()) and float(pixels.max()) <= 1.0
    assert (height, width, top, left) == (200, 300, 0, 16)   # scaled to 288x192, 16 px cut each side
