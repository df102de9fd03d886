"""What several generate test modules do alike, kept in one place: running `kubik` in the test
process, reading the one line `kubik generate` refuses bad input with, writing a T5 header, and
taking pictures with a LoRA loaded (unloading it whatever happens, so a module's shared pipeline
is left as it was), and a tiny SD3 run read back from its PNG."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import torch

from kubik_core.cli import main


def run_kubik(*argv) -> tuple[int, str]:
    """`kubik ARGV...` (each argument turned into text): its exit status and everything it printed,
    stdout then stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue() + err.getvalue()


def refusal(*argv) -> str:
    """The one line a header-only `kubik generate "a fox" ARGV...` run refuses with (exit status
    2), without its "kubik generate: error: " prefix."""
    status, text = run_kubik("generate", "a fox", *argv, "--loras", "none", "--device", "cpu", "--dry-run")
    assert status == 2, text
    assert len(text.strip().splitlines()) == 1, text
    return text.strip().removeprefix("kubik generate: error: ")


def t5_header_file(path, width):
    """A T5 encoder's keys at ``width`` (zeros: only the header is read before the check)."""
    from safetensors.torch import save_file

    save_file({"shared.weight": torch.zeros(8, width),
               "encoder.block.0.layer.0.SelfAttention.q.weight": torch.zeros(64, width),
               "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": torch.zeros(32, 4),
               "encoder.block.0.layer.1.DenseReluDense.wi_0.weight": torch.zeros(128, width)}, str(path))
    return path


def pictures_with_lora(pipe, names, picture, *adapter_weights) -> list:
    """``picture(pipe)`` with the LoRAs ``names`` as loaded, then once more at each of
    ``adapter_weights`` (diffusers' per-component weights, e.g. {"unet": 1.0, "text_encoder": 0.0});
    the LoRAs are unloaded afterwards, also when a picture fails."""
    try:
        pictures = [picture(pipe)]
        for weights in adapter_weights:
            pipe.set_adapters(names, adapter_weights=[weights])
            pictures.append(picture(pipe))
        return pictures
    finally:
        pipe.unload_lora_weights()


def sd3_model(sd3_files) -> list:
    """The flags naming the tiny SD3.5 Large checkpoint and its three text encoders."""
    return ["--checkpoint", sd3_files["large"], "--text-encoders", sd3_files["clip_l"], sd3_files["clip_g"],
            sd3_files["t5xxl"]]


def generate_sd3(prompt, sd3_files, tokenizer_dir, t5_tokenizer_dir, out, *extra) -> tuple[np.ndarray, dict, str]:
    """A 2-step 64x64 `kubik generate` (seed 4) on the tiny SD3.5 Large: its picture, its PNG's
    ``kubik`` metadata and what it printed."""
    status, text = run_kubik("generate", prompt, *sd3_model(sd3_files), "--tokenizer", tokenizer_dir,
                             "--t5-tokenizer", t5_tokenizer_dir, "--steps", 2, "--width", 64, "--height", 64,
                             "--seed", 4, "--out", out, "--store", out / "learning.sqlite3", "--loras", "none",
                             "--device", "cpu", "--memory", "none", *extra)
    assert status == 0, text
    from PIL import Image

    [png] = out.glob("kubik_*.png")
    with Image.open(png) as image:
        return np.asarray(image, dtype=np.float32), json.loads(image.text["kubik"]), text
