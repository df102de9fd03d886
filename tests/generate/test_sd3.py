"""`kubik generate` with SD3.5 from the files ComfyUI users have, offline, on the CPU.

The tiny SD3.5 files (tests/kubik_testing/tiny_sd3.py) are real single files in the original
layouts, built once per session with ComfyUI's classes: an all-in-one Medium-shaped file (MMDiT-X,
CLIP-L, CLIP-G, T5, VAE) and a Large-shaped checkpoint (MMDiT + VAE) with separate text encoders.

- the MMDiT converted by kubik gives ComfyUI's own forward pass on the same weights;
- the command end to end from a checkpoint + --text-encoders: a PNG with Kubik Save Image's
  metadata, recorded in the learning store; without T5 it runs on the two CLIPs and says so;
- --family auto from the header (second attention = Medium, q/k norms alone = Large);
- the aggressive memory strategy gives the picture of none;
- bad inputs give one clear line each; the MMDiT header parser, fuzzed, gives a config or one line.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from .helpers import refusal, run_kubik, t5_header_file

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def medium_pipe(sd3_files, tokenizer_dir):
    from kubik_core.generate.checkpoint import load_pipeline

    pipe, info = load_pipeline(sd3_files["medium"], tokenizer_dir)
    assert info.family == "sd3" and info.families == ("sd35_medium",)
    assert type(pipe).__name__ == "StableDiffusion3Pipeline" and pipe.text_encoder_3 is not None
    return pipe


def test_converted_mmdit_gives_comfyuis_forward_pass(medium_pipe, sd3_files):
    from safetensors.torch import load_file

    ref = load_file(str(sd3_files["reference"]))
    with torch.no_grad():
        out = medium_pipe.transformer(hidden_states=ref["x"], encoder_hidden_states=ref["context"],
                                      pooled_projections=ref["y"], timestep=ref["t"]).sample
    torch.testing.assert_close(out, ref["out"], atol=1e-4, rtol=1e-4)


def test_aggressive_on_the_cpu_gives_the_picture_of_none_sd3(medium_pipe):
    from kubik_core.generate.memory import apply_strategy

    def picture():
        return medium_pipe("a red fox", num_inference_steps=1, guidance_scale=1.0,     # one pass: kept short
                           width=64, height=64, generator=torch.Generator().manual_seed(9),
                           output_type="np").images[0]

    reference = picture()
    assert np.isfinite(reference).all() and reference.std() > 0.01
    apply_strategy(medium_pipe, "aggressive", torch.device("cpu"))
    np.testing.assert_allclose(picture(), reference, atol=1e-4)


def test_generate_sd35_large_from_checkpoint_and_text_encoders(sd3_files, tokenizer_dir, t5_tokenizer_dir, tmp_path):
    from PIL import Image

    from kubik_core.learning import LearningStore

    store = tmp_path / "learning.sqlite3"
    status, text = run_kubik("generate", "a red fox in the snow, watercolor", "--checkpoint", sd3_files["large"],
                             "--text-encoders", sd3_files["clip_g"], sd3_files["t5xxl"], sd3_files["clip_l"],
                             "--tokenizer", tokenizer_dir, "--t5-tokenizer", t5_tokenizer_dir, "--steps", 2,
                             "--width", 64, "--height", 64, "--seed", 4, "--out", tmp_path / "out", "--store", store,
                             "--loras", "none", "--json")
    assert status == 0, text
    result = json.loads(text[text.index("{"):])
    plan = result["plan"]
    assert plan["checkpoint_family"] == "sd3" and plan["family"] in ("sd35_large", "sd35_large_turbo")
    assert plan["negative"] and plan["plan"]["cfg"] > 1       # SD3.5 Large samples with CFG
    with Image.open(result["images"][0]) as image:
        assert image.size == (64, 64)
        parameters, kubik = image.text["parameters"], json.loads(image.text["kubik"])
        pixels = np.asarray(image, dtype=np.float32)
    assert "Steps: 2," in parameters and "Model: sd3.5-large-tiny" in parameters and "Negative prompt:" in parameters
    assert kubik["generate"]["checkpoint_family"] == "sd3" and pixels.std() > 1.0
    assert [row["family"] for row in LearningStore(str(store)).rows("generations")] == [plan["family"]]


def test_family_from_the_header_and_t5_left_out(sd3_files, tmp_path):
    status, text = run_kubik("generate", "a castle at dawn", "--checkpoint", sd3_files["medium"], "--loras", "none",
                             "--device", "cpu", "--dry-run", "--json")
    assert status == 0, text
    plan = json.loads(text[text.index("{"):])["plan"]
    assert plan["family"] == "sd35_medium" and plan["plan"]["cfg"] == 4.5 and plan["plan"]["sampler_name"] == "euler"
    assert plan["memory"]["strategy"] == "none"
    status, text = run_kubik("generate", "a castle", "--checkpoint", sd3_files["medium"], "--family", "sd35_large",
                             "--loras", "none", "--dry-run")
    assert status == 2
    assert text.strip() == ("kubik generate: error: --family sd35_large: the file is SD3.5 Medium (MMDiT-X: a second "
                            "attention in some blocks); give sd35_medium or auto")
    status, text = run_kubik("generate", "a castle", "--checkpoint", sd3_files["large"], "--text-encoders",
                             sd3_files["clip_l"], sd3_files["clip_g"], "--loras", "none", "--device", "cpu",
                             "--dry-run", "--json")
    assert status == 0, text
    plan = json.loads(text[text.index("{"):])["plan"]
    assert plan["family"] in ("sd35_large", "sd35_large_turbo")
    assert any(n.startswith("no T5-XXL: the prompt is encoded by CLIP-L and CLIP-G alone") for n in plan["notes"])


def test_hostile_sd3_inputs_give_one_clear_line(sd3_files, tmp_path):
    from safetensors.torch import load_file, save_file

    large, clip_l, clip_g = sd3_files["large"], sd3_files["clip_l"], sd3_files["clip_g"]
    assert refusal("--checkpoint", large) == (
        "sd3.5-large-tiny.safetensors is an SD3 model without its text encoders (clip_l.safetensors and "
        "clip_g.safetensors missing); pass --text-encoders clip_l.safetensors clip_g.safetensors "
        "t5xxl_fp16.safetensors (ComfyUI's models/text_encoders)")
    assert refusal("--checkpoint", large, "--text-encoders", clip_g) == (
        "--text-encoders: 1 CLIP files (clip_g-tiny.safetensors); SD3 takes two, CLIP-L and CLIP-G: --text-encoders "
        "clip_l.safetensors clip_g.safetensors t5xxl_fp16.safetensors (ComfyUI's models/text_encoders)")
    assert refusal("--checkpoint", large, "--text-encoders", clip_l, clip_l) == (
        "--text-encoders: CLIPs 64 and 64 wide; the SD3 model takes CLIP-L and CLIP-G whose widths add up to 160 "
        "(768 + 1280): give clip_l.safetensors and clip_g.safetensors")
    narrow = t5_header_file(tmp_path / "t5_small.safetensors", 32)
    assert refusal("--checkpoint", large, "--text-encoders", clip_l, clip_g, narrow) == (
        "--text-encoders t5_small.safetensors: its T5 is 32 wide, the SD3 model takes 192 (T5-XXL); give "
        "t5xxl_fp16.safetensors")
    bare = tmp_path / "sd3.5_large_unet.safetensors"    # a diffusion model alone, keys bare
    save_file({k[len("model.diffusion_model."):]: v for k, v in load_file(str(large)).items()
               if k.startswith("model.diffusion_model.")}, str(bare))
    assert refusal("--checkpoint", bare, "--text-encoders", clip_l, clip_g) == (
        "sd3.5_large_unet.safetensors is an SD3 diffusion model without its VAE; pass --vae with SD3's VAE "
        "(ComfyUI's models/vae)")
    status, text = run_kubik("generate", "a fox", "--checkpoint", bare, "--text-encoders", clip_l, clip_g, "--vae",
                             large, "--loras", "none", "--device", "cpu", "--dry-run")
    assert status == 0, text          # the checkpoint's first_stage_model serves as --vae


_MMDIT = {"x_embedder.proj.weight": [128, 16, 2, 2], "pos_embed": [1, 256, 128], "context_embedder.weight": [128, 192],
          "y_embedder.mlp.0.weight": [128, 160], "final_layer.linear.weight": [64, 128],
          "joint_blocks.0.x_block.attn.qkv.weight": [384, 128], "joint_blocks.0.x_block.attn.ln_q.weight": [64],
          "joint_blocks.1.x_block.attn2.qkv.weight": [384, 128]}


def test_fuzz_mmdit_header_parser_gives_a_config_or_one_clear_error():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from kubik_core.checkpoints import CheckpointError
    from kubik_core.checkpoints.sd3 import header_families, transformer_config

    dims = st.lists(st.integers(min_value=-2, max_value=70000), max_size=5)

    @settings(derandomize=True, max_examples=200, deadline=None)
    @given(st.fixed_dictionaries({}, optional={key: st.one_of(st.just(shape), dims) for key, shape in _MMDIT.items()}))
    def check(shapes):
        try:
            config = transformer_config(shapes, "x.safetensors")
        except CheckpointError as exc:
            assert "\n" not in str(exc)
            return
        assert config["num_attention_heads"] * 64 == shapes["x_embedder.proj.weight"][0]
        assert config["pos_embed_max_size"] ** 2 == shapes["pos_embed"][1]
        assert header_families(config)[0]

    check()
