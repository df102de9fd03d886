"""`kubik generate` on tiny random-weight SD1.5- and SDXL-shaped checkpoints, offline, on the CPU.

- the command end to end (with a LoRA and a ControlNet): PNGs with Kubik Save Image's metadata (A1111 parameters with the model
  and LoRA hashes, the kubik JSON), one learning-store generation per image, `kubik rate`,
  `kubik insights`;
- LoRAs through diffusers/peft from a kohya file the test writes: strength 0 gives the picture
  without the LoRA, strength 1 changes it;
- an SD1.5 ControlNet single file (lllyasviel's layout) loaded offline: strength 0 gives the
  picture without it, strength 1 changes it;
- the memory strategy that runs on the CPU (aggressive: group offloading onto the CPU, VAE tiling
  and slicing) gives the picture of `none`, on both families.
Sizes are tiny (64x64, 2 steps) and the pipelines are loaded once per module.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from kubik_core.loras.synthetic import kohya_metadata

from .helpers import pictures_with_lora, run_kubik

pytestmark = pytest.mark.timeout(600)

PROMPT = "kbk style, a red fox in the snow, watercolor"
# kohya names of modules the tiny SD1.5 model has (one level of 320 channels, CLIP-L layers); the
# text encoder part has out_proj like every kohya LoRA (diffusers tells the layout by it).
TINY_SD15_LORA_MODULES = [
    ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q", 320, 320),
    ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", 768, 320),
    ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_v", 768, 320),
    ("lora_unet_up_blocks_0_attentions_1_transformer_blocks_0_ff_net_2", 1280, 320),
    ("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 768, 768),
    ("lora_te_text_model_encoder_layers_0_self_attn_out_proj", 768, 768),
    ("lora_te_text_model_encoder_layers_0_mlp_fc1", 768, 3072),
]


def _write_lora(path, rank=4, seed=0):
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for module, fan_in, fan_out in TINY_SD15_LORA_MODULES:
        tensors[f"{module}.lora_down.weight"] = torch.randn(rank, fan_in, generator=generator) / fan_in ** 0.5
        tensors[f"{module}.lora_up.weight"] = torch.randn(fan_out, rank, generator=generator)
        tensors[f"{module}.alpha"] = torch.tensor(float(rank))
    save_file(tensors, str(path), metadata=kohya_metadata("sd1", "kbk_style", rank, {"kbk style": 3},
                                                           trigger="kbk style"))
    return path


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loras")
    _write_lora(folder / "kbk_style.safetensors")
    return folder


@pytest.fixture(scope="module")
def cli_run(sd15_checkpoint, sd15_controlnet, tokenizer_dir, lora_dir, tmp_path_factory):
    from PIL import Image

    tmp = tmp_path_factory.mktemp("generate")
    store = tmp / "learning.sqlite3"
    Image.fromarray((np.random.RandomState(1).rand(32, 48, 3) * 255).astype("uint8")).save(tmp / "hint.png")
    status, text = run_kubik("generate", PROMPT, "--checkpoint", sd15_checkpoint, "--tokenizer", tokenizer_dir,
                             "--steps", 2, "--width", 64, "--height", 64, "-n", 2, "--seed", 5,
                             "--out", tmp / "out", "--store", store, "--loras", "kbk_style:0.8",
                             "--lora-dir", lora_dir, "--controlnet", sd15_controlnet, "--control-image",
                             tmp / "hint.png", "--control-strength", 0.5, "--json")
    assert status == 0, text
    return json.loads(text[text.index("{"):]), store, sd15_checkpoint, lora_dir


def test_generate_writes_pngs_with_kubik_save_image_metadata(cli_run):
    from PIL import Image

    from kubik_core.learning.model_hashes import sha256_of

    result, _store, checkpoint, loras = cli_run
    assert len(result["images"]) == 2 and result["seeds"] == [5, 6]
    model_hash = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:10]
    lora_hash = sha256_of(loras / "kbk_style.safetensors", "tensors")[:12]
    for path, seed in zip(result["images"], result["seeds"]):
        with Image.open(path) as image:
            assert image.size == (64, 64)
            parameters, kubik = image.text["parameters"], json.loads(image.text["kubik"])
        assert parameters.splitlines()[0] == "kbk style, a red fox in the snow, watercolor <lora:kbk_style:0.8>"
        assert f"Seed: {seed}," in parameters and "Steps: 2," in parameters and "Size: 64x64" in parameters
        assert f"Model hash: {model_hash}" in parameters and "Model: tiny_sd15" in parameters
        assert f'Lora hashes: "kbk_style: {lora_hash}"' in parameters
        assert kubik["analysis"]["prompt"] == PROMPT and kubik["plan"]["steps"] == 2
        assert kubik["loras"][0]["name"] == "kbk_style.safetensors" and "path" not in kubik["loras"][0]
        assert kubik["explanation"] and kubik["generate"]["checkpoint_family"] == "sd15"
        assert kubik["control"]["strength"] == 0.5 and "ControlNet at strength 0.5" in kubik["explanation"]
    # the two seeds give two different pictures
    first, second = (np.asarray(Image.open(p), dtype=np.float32) for p in result["images"])
    assert np.abs(first - second).mean() > 1.0


def test_generations_are_recorded_rated_and_seen_by_insights(cli_run):
    from kubik_core.learning import LearningStore
    from kubik_core.learning.insights import insights

    result, store_path, _checkpoint, _loras = cli_run
    store = LearningStore(str(store_path))
    rows = {row["id"]: row for row in store.rows("generations")}
    assert set(rows) == set(result["generation_ids"])
    assert {int(row["seed"]) for row in rows.values()} == {5, 6}   # stored as text (64-bit seeds)
    assert {row["family"] for row in rows.values()} == {"sd15"}
    assert [r["lora"] for r in store.rows("generation_loras")] == ["kbk_style.safetensors"] * 2
    # --steps/--width/--height replaced the optimizer's values: recorded as edits, as Save Image does
    assert {(e["field"], str(e["final"])) for e in store.rows("edits")} >= {("steps", "2"), ("width", "64")}
    status, text = run_kubik("rate", result["generation_ids"][0], 4, "--store", store_path)
    assert status == 0 and "4/5" in text
    assert store.rating_of(result["generation_ids"][0])["rating"] == 4
    data = insights(store)
    assert data["generations"] == 2 and data["feedback"] == 1
    status, text = run_kubik("rate", result["generation_ids"][0], 6, "--store", store_path)
    assert status == 2 and text.strip() == "kubik rate: error: rating 6: give 1 to 5 stars"


# ---------------------------------------------------------------- pipelines loaded once

def _picture(pipe, seed=3):
    return pipe("kbk style, a red fox", negative_prompt="blurry", num_inference_steps=2, guidance_scale=7.0,
                width=64, height=64, generator=torch.Generator().manual_seed(seed), output_type="np").images[0]


@pytest.fixture(scope="module")
def sd15_pipe(sd15_checkpoint, tokenizer_dir):
    from kubik_core.generate.checkpoint import load_pipeline

    pipe, info = load_pipeline(sd15_checkpoint, tokenizer_dir)
    assert info.family == "sd15" and info.vae_kind == "taesd"
    pipe.kubik_checkpoint = str(sd15_checkpoint)
    return pipe


def test_lora_strength_zero_is_no_lora_and_strength_one_changes_the_picture(sd15_pipe, lora_dir):
    from kubik_core.generate.loras import apply_loras, parse_explicit

    without = _picture(sd15_pipe)
    names = apply_loras(sd15_pipe, parse_explicit("kbk_style:0", [str(lora_dir)]))
    at_zero, at_one, unet_only = pictures_with_lora(sd15_pipe, names, _picture, {"unet": 1.0, "text_encoder": 1.0},
                                                    {"unet": 1.0, "text_encoder": 0.0})
    np.testing.assert_allclose(at_zero, without, atol=1e-6)
    assert np.abs(at_one - without).mean() > 1e-3
    assert np.abs(unet_only - at_one).mean() > 1e-4      # the text-encoder strength counts on its own
    np.testing.assert_allclose(_picture(sd15_pipe), without, atol=1e-6)   # unloaded: back as it was


def test_controlnet_loads_offline_strength_zero_is_the_plain_picture(sd15_pipe, sd15_controlnet, tmp_path):
    from PIL import Image

    from kubik_core.generate import GenerateRequest, plan_generation
    from kubik_core.generate.run import _with_controlnet

    hint = Image.fromarray((np.random.RandomState(0).rand(64, 64, 3) * 255).astype("uint8"))
    hint.save(tmp_path / "hint.png")
    prepared = plan_generation(GenerateRequest("a red fox", checkpoint=sd15_pipe.kubik_checkpoint, loras="none",
                                               device="cpu", controlnet=str(sd15_controlnet),
                                               control_image=str(tmp_path / "hint.png")))
    assert prepared.control.strength == 1.0 and prepared.control.end_percent == 1.0   # ControlNet 1.1's defaults
    control_pipe = _with_controlnet(sd15_pipe, str(sd15_controlnet), "sd15")

    def picture(strength):
        return control_pipe("kbk style, a red fox", negative_prompt="blurry", image=hint, num_inference_steps=2,
                            guidance_scale=7.0, width=64, height=64, controlnet_conditioning_scale=strength,
                            generator=torch.Generator().manual_seed(3), output_type="np").images[0]

    np.testing.assert_allclose(picture(0.0), _picture(sd15_pipe), atol=1e-6)
    assert np.abs(picture(1.0) - picture(0.0)).mean() > 1e-3


def _check_weighted_embeddings(pipe):
    """Weights 1 give the pipeline's own encode_prompt; a weight moves only its tokens (ComfyUI's
    rule); a prompt past 75 tokens gets a second window and the negative is padded to match."""
    from kubik_core.generate.prompt_weights import weighted_prompt_kwargs

    plain = weighted_prompt_kwargs(pipe, [("a red fox", 1.0), (" in the snow", 1.0)], [("blurry", 1.0)])
    with torch.inference_mode():
        own = pipe.encode_prompt("a red fox in the snow", device="cpu", num_images_per_prompt=1,
                                 do_classifier_free_guidance=True, negative_prompt="blurry")
    torch.testing.assert_close(plain["prompt_embeds"], own[0])
    torch.testing.assert_close(plain["negative_prompt_embeds"], own[1])
    if len(own) == 4:    # SDXL's pooled vectors
        torch.testing.assert_close(plain["pooled_prompt_embeds"], own[2])
    weighted = weighted_prompt_kwargs(pipe, [("a red fox", 1.0), (" in the snow", 1.5)], [("blurry", 1.0)])
    moved = (weighted["prompt_embeds"] - plain["prompt_embeds"]).abs().amax(-1)[0] > 1e-6
    assert moved.nonzero().flatten().tolist() == [4, 5, 6]        # "in the snow" after <start> a red fox
    long = weighted_prompt_kwargs(pipe, [("fox, " * 60, 1.0)], [("blurry", 1.0)])
    assert long["prompt_embeds"].shape[1] == long["negative_prompt_embeds"].shape[1] == 2 * 77


def test_prompt_weights_are_applied_as_comfyui_applies_them(sd15_pipe):
    _check_weighted_embeddings(sd15_pipe)


def test_aggressive_on_the_cpu_gives_the_picture_of_none_sd15(sd15_pipe):
    from kubik_core.generate.memory import apply_strategy

    reference = _picture(sd15_pipe, seed=9)
    notes = apply_strategy(sd15_pipe, "aggressive", torch.device("cpu"))
    assert any("group offloading" in n for n in notes) and any("fp8" in n for n in notes)
    np.testing.assert_allclose(_picture(sd15_pipe, seed=9), reference, atol=1e-4)


def test_sdxl_loads_offline_and_aggressive_gives_the_picture_of_none(sdxl_checkpoint, tokenizer_dir):
    from kubik_core.generate.checkpoint import load_pipeline
    from kubik_core.generate.memory import apply_strategy
    from kubik_core.generate.schedulers import diffusers_scheduler

    pipe, info = load_pipeline(sdxl_checkpoint, tokenizer_dir)
    assert info.family == "sdxl" and type(pipe).__name__ == "StableDiffusionXLPipeline"
    pipe.scheduler, warnings = diffusers_scheduler(pipe.scheduler.config, "euler_ancestral", "normal")
    assert type(pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler" and warnings
    reference = _picture(pipe)
    assert np.isfinite(reference).all() and reference.std() > 0.01
    _check_weighted_embeddings(pipe)
    # The SD1.5 loader's KL-VAE path (real SD1.5 files have one; the tiny SD1.5 has a TAESD) on the
    # same first_stage_model tensors decodes as diffusers' own single-file SDXL conversion does.
    from safetensors.torch import load_file

    from kubik_core.checkpoints import read_shapes
    from kubik_core.checkpoints.vae import sd15_vae

    vae_state = {k: v.float() for k, v in load_file(str(sdxl_checkpoint)).items() if k.startswith("first_stage_model.")}
    sd15_kl = sd15_vae(vae_state, read_shapes(sdxl_checkpoint), "tiny_sdxl")
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(sd15_kl.decode(latent).sample, pipe.vae.decode(latent).sample)
    apply_strategy(pipe, "aggressive", torch.device("cpu"))
    np.testing.assert_allclose(_picture(pipe), reference, atol=1e-4)


def test_plan_for_sdxl_reads_the_family_and_estimates_every_strategy(sdxl_checkpoint):
    from kubik_core.generate import GenerateRequest, plan_generation

    prepared = plan_generation(GenerateRequest("a castle at dawn", checkpoint=str(sdxl_checkpoint),
                                               loras="none", device="cpu"))
    assert prepared.info.family == "sdxl" and prepared.plan.family in ("sdxl", "segmind_vega")
    assert prepared.choice.strategy == "none" and "no CUDA GPU" in prepared.choice.reason
    estimates = {e.strategy: e for e in prepared.choice.estimates}
    assert estimates["sequential"].peak_bytes < estimates["balanced"].peak_bytes < estimates["none"].peak_bytes
    assert not estimates["balanced"].runs_here and estimates["aggressive"].runs_here


def test_loras_auto_takes_the_recommenders_pick_with_its_file(sd15_checkpoint, lora_dir):
    from kubik_core.generate import GenerateRequest, plan_generation

    prepared = plan_generation(GenerateRequest("a red fox in the snow, kbk style", checkpoint=str(sd15_checkpoint),
                                               loras="auto", lora_dirs=[str(lora_dir)], device="cpu"))
    assert [(i.name, i.suggested) for i in prepared.stack.items] == [("kbk_style.safetensors", True)]
    assert prepared.stack.items[0].path == str((lora_dir / "kbk_style.safetensors").resolve())
    none = plan_generation(GenerateRequest("a red fox in the snow, kbk style", checkpoint=str(sd15_checkpoint),
                                           loras="none", lora_dirs=[str(lora_dir)], device="cpu"))
    assert none.stack.items == []
