"""Hostile training data for `kubik lora train`: each case is refused with one clear line and
exit status 2 before any model is loaded (the --base file need not even exist)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from kubik_core.cli import main
from kubik_core.lora_train import dataset


def _picture(path, size=(128, 128)):
    Image.fromarray(np.zeros((size[1], size[0], 3), dtype=np.uint8)).save(path)


def _run(data, tmp_path, capsys, *extra):
    status = main(["lora", "train", str(data), "--base", str(tmp_path / "none.safetensors"),
                   "--output", str(tmp_path / "out"), "--name", "x", "--resolution", "128",
                   "--no-progress", *extra])
    err = capsys.readouterr().err.strip()
    return status, err


def _folder(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    _picture(folder / "good.png")
    return folder


CASES = {
    "not an image": (lambda f: (f / "text.png").write_bytes(b"just some text, not pixels"),
                     "text.png: not a readable image (UnidentifiedImageError); replace or remove the file"),
    "broken image": (lambda f: (f / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really"),
                     "broken.png: not a readable image (OSError); replace or remove the file"),
    "huge caption": (lambda f: (_picture(f / "big.png"), (f / "big.txt").write_text("tag, " * 5000)),
                     "big.txt: the caption is 25000 bytes, more than the 16384 a caption may have; shorten it"),
    "caption not utf-8": (lambda f: (_picture(f / "latin.png"), (f / "latin.txt").write_bytes(b"caf\xe9 au lait")),
                          "latin.txt: the caption is not UTF-8 text; save it as UTF-8"),
    "caption with NUL": (lambda f: (_picture(f / "nul.png"), (f / "nul.txt").write_bytes(b"a\x00b")),
                         "nul.txt: the caption holds NUL bytes; it is not a text file"),
    "tiny picture": (lambda f: _picture(f / "tiny.png", (20, 20)),
                     "tiny.png: 20x20 is too small for a 64-pixel bucket without enlarging it more than "
                     "--max-upscale 1.0; raise --max-upscale or use a larger picture"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_folder_contents_are_refused_in_one_line(case, tmp_path, capsys):
    folder = _folder(tmp_path)
    make, message = CASES[case]
    make(folder)
    status, err = _run(folder, tmp_path, capsys)
    assert status == 2
    assert err == f"kubik lora: error: {message}"


def test_a_symlinked_picture_leading_out_of_the_folder_is_refused(tmp_path, capsys):
    folder = _folder(tmp_path)
    _picture(tmp_path / "secret.png")
    os.symlink(tmp_path / "secret.png", folder / "link.png")
    status, err = _run(folder, tmp_path, capsys)
    assert (status, err) == (2, "kubik lora: error: link.png: 'link.png' is outside the data folder; "
                                "pictures and captions must stay inside it")


def test_a_caption_symlinked_out_of_the_folder_is_not_read(tmp_path, capsys):
    folder = _folder(tmp_path)
    (tmp_path / "secret.txt").write_text("password")
    os.symlink(tmp_path / "secret.txt", folder / "good.txt")
    status, err = _run(folder, tmp_path, capsys)
    assert (status, err) == (2, "kubik lora: error: good.txt: 'good.txt' is outside the data folder; "
                                "pictures and captions must stay inside it")


MANIFEST_CASES = {
    "escape": ('{"image": "../secret.png"}',
               "train.jsonl line 1: '../secret.png' is outside the data folder; pictures and captions must stay inside it"),
    "absolute": (json.dumps({"image": "/etc/passwd"}),
                 "train.jsonl line 1: '/etc/passwd' is outside the data folder; pictures and captions must stay inside it"),
    "not an object": ("[1, 2]", 'train.jsonl line 1: each line must be an object with "image" (a relative '
                                'path) and optionally "caption"'),
    "caption not text": ('{"image": "good.png", "caption": 5}',
                         'train.jsonl line 1: "caption" must be text of at most 16384 bytes'),
    "missing file": ('{"image": "gone.png"}', "train.jsonl line 1: 'gone.png' does not exist next to the manifest"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_CASES))
def test_bad_manifest_lines_are_refused_in_one_line(case, tmp_path, capsys):
    folder = _folder(tmp_path)
    _picture(tmp_path / "secret.png")
    line, message = MANIFEST_CASES[case]
    (folder / "train.jsonl").write_text(line + "\n", encoding="utf-8")
    status, err = _run(folder / "train.jsonl", tmp_path, capsys)
    assert (status, err) == (2, f"kubik lora: error: {message}")


def test_bad_json_and_empty_folders_and_bad_settings(tmp_path, capsys):
    folder = _folder(tmp_path)
    (folder / "train.jsonl").write_text('{"image": "good.png"\n', encoding="utf-8")
    status, err = _run(folder / "train.jsonl", tmp_path, capsys)
    assert status == 2 and err.startswith("kubik lora: error: train.jsonl line 1: ") and "\n" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    status, err = _run(empty, tmp_path, capsys)
    assert status == 2 and err.endswith("no pictures found (.png, .jpg, .jpeg, .webp, .bmp); add some or check the folder")
    status, err = _run(folder, tmp_path, capsys, "--steps", "0")
    assert (status, err) == (2, "kubik lora: error: --steps must be at least 1")
    status, err = _run(folder, tmp_path, capsys, "--name", "../escape")
    assert (status, err) == (2, "kubik lora: error: --name must be a plain file name (no folders)")
    status, err = _run(folder, tmp_path, capsys, "--resolution", "100")
    assert (status, err) == (2, "kubik lora: error: --resolution must be a multiple of 64 (e.g. 1024), got 100")


def _checkpoint(path, shapes: dict) -> None:
    """A small safetensors file with the key names (zeros of the given shapes) of some family."""
    import torch
    from safetensors.torch import save_file

    save_file({name: torch.zeros(shape, dtype=torch.float16) for name, shape in shapes.items()}, str(path))


BASE_FAMILY_CASES = {
    "empty": ({}, "no Stable Diffusion model (no model.diffusion_model.* tensors)"),
    "flux": ({"double_blocks.0.img_attn.qkv.weight": [4, 4]}, "FLUX"),
    "sd3": ({"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": [4, 4]}, "SD3/SD3.5"),
    "sd2": ({"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [8, 16],
             "cond_stage_model.model.token_embedding.weight": [4, 16]}, "SD2.x"),
}


@pytest.mark.parametrize("case", sorted(BASE_FAMILY_CASES))
def test_a_base_model_that_is_neither_sd15_nor_sdxl_is_refused_naming_the_file(case, tmp_path, capsys):
    folder = _folder(tmp_path)
    shapes, holds = BASE_FAMILY_CASES[case]
    _checkpoint(tmp_path / "none.safetensors", shapes)
    status, err = _run(folder, tmp_path, capsys)
    assert (status, err) == (2, f"kubik lora: error: --base none.safetensors: the checkpoint holds {holds}; kubik "
                                "lora train trains LoRAs for SD1.5 and SDXL (incl. Pony and Illustrious) "
                                "single-file checkpoints")


def test_a_missing_base_model_names_the_flag(tmp_path, capsys):
    status, err = _run(_folder(tmp_path), tmp_path, capsys)
    assert (status, err) == (2, "kubik lora: error: --base: no file 'none.safetensors'; give a .safetensors "
                                "checkpoint")


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=80), st.builds(json.dumps, st.dictionaries(
    st.sampled_from(["image", "caption", "x"]), st.one_of(st.text(max_size=20), st.integers(), st.none()),
    max_size=3))), max_size=4))
def test_fuzzed_manifests_give_items_or_one_dataset_error(tmp_path_factory, lines):
    folder = tmp_path_factory.getbasetemp() / "fuzz"
    folder.mkdir(exist_ok=True)
    if not (folder / "good.png").exists():
        _picture(folder / "good.png")
    manifest = folder / "m.jsonl"
    manifest.write_text("\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines), encoding="utf-8")
    try:
        items = dataset.load_items(manifest, trigger="t", resolution=128)
    except dataset.DatasetError as exc:
        assert "\n" not in str(exc) and str(exc)
    else:
        assert all(item.path.parent == folder.resolve() for item in items)
