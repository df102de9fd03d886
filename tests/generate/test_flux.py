"""`kubik generate` with FLUX.1 from the files ComfyUI users have, offline, on the CPU.

The tiny FLUX files (tests/kubik_testing/tiny_flux.py) are real single files in the original
layouts, built once per session with ComfyUI's classes: a dev diffusion model (bare BFL keys), a
schnell one (under model.diffusion_model.), CLIP-L, T5, the 16-channel VAE, and an all-in-one
checkpoint as ComfyUI's CheckpointSave writes it.

- the transformer converted by kubik gives ComfyUI's own FLUX forward pass on the same weights;
  read in bfloat16 (a GPU run), every part holds the same weights, none materialised in float32;
- the command end to end from separate files: a PNG with Kubik Save Image's metadata (distilled
  guidance included), recorded in the learning store;
- --family auto from the header: guidance embedding = dev (guidance 3.5), none = schnell (its 4
  distilled steps, no guidance);
- the aggressive memory strategy gives the picture of none; a LoRA applies through diffusers;
- bad inputs give one clear line each (missing text encoders, a T5 of the wrong width, a
  truncated file, a missing tokenizer, a VAE of another family ...).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from .helpers import pictures_with_lora, refusal, run_kubik, t5_header_file

pytestmark = pytest.mark.timeout(600)


def _separate(files) -> list:
    return ["--text-encoders", files["t5xxl"], files["clip_l"], "--vae", files["vae"]]


@pytest.fixture(scope="module")
def dev_pipe(flux_files, tokenizer_dir, t5_tokenizer_dir):
    from kubik_core.generate.checkpoint import load_pipeline

    pipe, info = load_pipeline(flux_files["checkpoint"], tokenizer_dir, t5_tokenizer_dir=t5_tokenizer_dir)
    assert info.family == "flux" and info.files.variant == "dev" and type(pipe).__name__ == "FluxPipeline"
    return pipe


def test_converted_transformer_gives_comfyuis_flux_forward_pass(dev_pipe, flux_files):
    from safetensors.torch import load_file

    ref = load_file(str(flux_files["reference"]))
    with torch.no_grad():
        out = dev_pipe.transformer(hidden_states=ref["img"], encoder_hidden_states=ref["txt"],
                                   pooled_projections=ref["y"], timestep=ref["timesteps"], guidance=ref["guidance"],
                                   img_ids=ref["img_ids"][0], txt_ids=ref["txt_ids"][0]).sample
    torch.testing.assert_close(out, ref["out"], atol=1e-4, rtol=1e-4)


def test_bfloat16_loading_reads_every_part_in_bfloat16(dev_pipe, flux_files, tokenizer_dir, t5_tokenizer_dir):
    """What a GPU run loads: the tensors straight into bfloat16 (the transformer, T5 and VAE built on
    the meta device take them as parameters), the same weights as the float32 load."""
    from kubik_core.generate.checkpoint import load_pipeline

    pipe, _ = load_pipeline(flux_files["checkpoint"], tokenizer_dir, t5_tokenizer_dir=t5_tokenizer_dir,
                            flow_dtype=torch.bfloat16)
    for name in ("transformer", "text_encoder", "text_encoder_2", "vae"):
        module, reference = getattr(pipe, name), getattr(dev_pipe, name).state_dict()
        assert {t.device.type for t in [*module.parameters(), *module.buffers()]} == {"cpu"}, name
        assert {t.dtype for t in module.parameters()} == {torch.bfloat16}, name
        state = module.state_dict()
        assert state.keys() == reference.keys(), name
        for key, value in state.items():
            if value.is_floating_point():
                assert torch.equal(value, reference[key].to(value.dtype)), (name, key)


def _picture(pipe, seed=3, guidance=3.5):
    return pipe("a red fox", num_inference_steps=2, guidance_scale=guidance, width=64, height=64,
                max_sequence_length=64, generator=torch.Generator().manual_seed(seed), output_type="np").images[0]


def test_flux_lora_strength_zero_is_no_lora_and_one_changes_the_picture(dev_pipe, tmp_path):
    from safetensors.torch import save_file

    from kubik_core.generate.loras import apply_loras
    from kubik_core.loras.stack import LoraStack, StackItem

    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for target in ("single_transformer_blocks.0.attn.to_q", "transformer_blocks.1.ff.net.2"):
        fan_in = 256 if target.endswith("net.2") else 64
        tensors[f"transformer.{target}.lora_A.weight"] = torch.randn(4, fan_in, generator=generator) / 8
        tensors[f"transformer.{target}.lora_B.weight"] = torch.randn(64, 4, generator=generator)
    save_file(tensors, str(tmp_path / "fox.safetensors"))
    without = _picture(dev_pipe)
    stack = LoraStack(items=[StackItem(name="fox.safetensors", strength_model=0.0, strength_clip=1.0,
                                       path=str(tmp_path / "fox.safetensors"))])
    names = apply_loras(dev_pipe, stack)
    at_zero, at_one = pictures_with_lora(dev_pipe, names, _picture, {"transformer": 1.0, "text_encoder": 1.0})
    np.testing.assert_allclose(at_zero, without, atol=1e-6)
    assert np.abs(at_one - without).mean() > 1e-3


def test_aggressive_on_the_cpu_gives_the_picture_of_none_flux(dev_pipe):
    from kubik_core.generate.memory import apply_strategy

    reference = _picture(dev_pipe, seed=9)
    assert np.isfinite(reference).all() and reference.std() > 0.01
    notes = apply_strategy(dev_pipe, "aggressive", torch.device("cpu"))
    assert any("group offloading" in n for n in notes)
    np.testing.assert_allclose(_picture(dev_pipe, seed=9), reference, atol=1e-4)


def test_generate_flux_dev_from_separate_files(flux_files, tokenizer_dir, t5_tokenizer_dir, tmp_path):
    from PIL import Image

    from kubik_core.learning import LearningStore

    store = tmp_path / "learning.sqlite3"
    status, text = run_kubik("generate", "a red fox in the snow, (watercolor:1.2)", "--checkpoint", flux_files["dev"],
                             *_separate(flux_files), "--tokenizer", tokenizer_dir, "--t5-tokenizer", t5_tokenizer_dir,
                             "--steps", 2, "--width", 64, "--height", 64, "--seed", 4, "--out", tmp_path / "out",
                             "--store", store, "--loras", "none", "--json")
    assert status == 0, text
    result = json.loads(text[text.index("{"):])
    plan = result["plan"]
    assert plan["checkpoint_family"] == "flux" and plan["family"] == "flux_dev" and plan["negative"] == ""
    assert plan["plan"]["guidance"] == 3.5 and plan["plan"]["cfg"] == 1.0
    assert "prompt weights are not applied to FLUX here: the words are kept at weight 1" in plan["notes"]
    with Image.open(result["images"][0]) as image:
        assert image.size == (64, 64)
        parameters, kubik = image.text["parameters"], json.loads(image.text["kubik"])
        pixels = np.asarray(image, dtype=np.float32)
    assert "Steps: 2," in parameters and "Distilled CFG Scale: 3.5" in parameters
    assert "Model: flux1-dev-tiny" in parameters and kubik["generate"]["checkpoint_family"] == "flux"
    assert pixels.std() > 1.0
    rows = LearningStore(str(store)).rows("generations")
    assert [row["family"] for row in rows] == ["flux_dev"] and [row["id"] for row in rows] == result["generation_ids"]


def test_family_auto_reads_schnell_from_the_header_and_keeps_its_distilled_settings(flux_files, tmp_path):
    # named like a dev file: the missing guidance embedding decides
    schnell = tmp_path / "flux1-dev-renamed.safetensors"
    schnell.write_bytes(flux_files["schnell"].read_bytes())
    status, text = run_kubik("generate", "a castle at dawn", "--checkpoint", schnell, *_separate(flux_files),
                             "--loras", "none", "--device", "cpu", "--dry-run", "--json")
    assert status == 0, text
    plan = json.loads(text[text.index("{"):])["plan"]
    assert plan["family"] == "flux_schnell" and plan["plan"]["steps"] == 4 and plan["plan"]["guidance"] is None
    assert plan["plan"]["cfg"] == 1.0
    assert {e["strategy"] for e in plan["memory"]["estimates"]} == {"none", "balanced", "sequential", "aggressive"}
    status, text = run_kubik("generate", "a castle", "--checkpoint", schnell, *_separate(flux_files), "--family",
                             "flux_dev", "--loras", "none", "--dry-run")
    assert status == 2
    assert text.strip() == ("kubik generate: error: --family flux_dev: the file is FLUX.1 schnell (guidance "
                            "embedding absent); give flux_schnell or auto")


def test_flux_memory_estimate_counts_every_file(flux_files):
    from kubik_core.generate import GenerateRequest, plan_generation

    prepared = plan_generation(GenerateRequest("a castle", checkpoint=str(flux_files["dev"]), loras="none",
                                               device="cpu", text_encoders=[str(flux_files["clip_l"]),
                                                                            str(flux_files["t5xxl"])],
                                               vae=str(flux_files["vae"])))
    sizes = prepared.info.component_bytes
    # float32 bytes of each file's tensors (the files hold float16: twice their data)
    for part, kind in (("transformer", "dev"), ("text_encoder", "clip_l"), ("text_encoder_2", "t5xxl"),
                       ("vae", "vae")):
        assert 2 * flux_files[kind].stat().st_size > sizes[part] > 1.9 * flux_files[kind].stat().st_size - 20000
    none = next(e for e in prepared.choice.estimates if e.strategy == "none")
    assert none.peak_bytes > sum(sizes.values())


# ---------------------------------------------------------------- bad inputs, one line each

def test_hostile_flux_inputs_give_one_clear_line(flux_files, tmp_path):
    from safetensors.torch import save_file

    dev, clip, t5, vae = flux_files["dev"], flux_files["clip_l"], flux_files["t5xxl"], flux_files["vae"]
    assert refusal("--checkpoint", dev) == (
        "flux1-dev-tiny.safetensors is a FLUX diffusion model without its text encoders (clip_l.safetensors and "
        "t5xxl_fp16.safetensors missing); pass --text-encoders clip_l.safetensors t5xxl_fp16.safetensors "
        "(ComfyUI's models/text_encoders)")
    assert refusal("--checkpoint", dev, "--text-encoders", clip) == (
        "flux1-dev-tiny.safetensors is a FLUX diffusion model without its text encoders (t5xxl_fp16.safetensors "
        "missing); pass --text-encoders clip_l.safetensors t5xxl_fp16.safetensors (ComfyUI's models/text_encoders)")
    assert refusal("--checkpoint", dev, "--text-encoders", clip, t5) == (
        "flux1-dev-tiny.safetensors is a FLUX diffusion model without its VAE; pass --vae ae.safetensors "
        "(ComfyUI's models/vae)")
    wide = t5_header_file(tmp_path / "t5_base.safetensors", 32)
    assert refusal("--checkpoint", dev, "--text-encoders", clip, wide, "--vae", vae) == (
        "--text-encoders t5_base.safetensors: its T5 is 32 wide, the FLUX model takes 64 (T5-XXL); give "
        "t5xxl_fp16.safetensors or t5xxl_fp8_e4m3fn.safetensors")
    assert refusal("--checkpoint", dev, "--text-encoders", t5, vae, "--vae", vae).startswith(
        "--text-encoders ae-tiny.safetensors: neither CLIP nor T5")
    assert refusal("--checkpoint", dev, "--text-encoders", clip, t5, "--vae", clip) == (
        "--vae clip_l-tiny.safetensors: no autoencoder in it (encoder.down.*, decoder.* missing); give FLUX's VAE")
    sd_vae = tmp_path / "sd_vae.safetensors"
    save_file({"encoder.down.0.block.0.conv1.weight": torch.zeros(32, 3, 3, 3),
               "decoder.conv_in.weight": torch.zeros(64, 4, 3, 3)}, str(sd_vae))
    assert refusal("--checkpoint", dev, "--text-encoders", clip, t5, "--vae", sd_vae) == (
        "--vae sd_vae.safetensors: a 4-channel VAE; FLUX needs its 16-channel VAE")
    truncated = tmp_path / "flux1-truncated.safetensors"
    truncated.write_bytes(dev.read_bytes()[:-1000])
    assert refusal("--checkpoint", truncated, *_separate(flux_files)).endswith(
        "the file is truncated; the checkpoint must be a .safetensors file")
    assert refusal("--checkpoint", dev, "--text-encoders", clip, tmp_path / "nothing.safetensors") == (
        "--text-encoders: no file 'nothing.safetensors'; give a .safetensors checkpoint")
    # the all-in-one file holds its own parts; an SD file takes no FLUX parts
    assert run_kubik("generate", "a fox", "--checkpoint", flux_files["checkpoint"], "--loras", "none",
                     "--dry-run")[0] == 0
    # a FLUX relative this pipeline does not run is named
    flux2 = tmp_path / "flux2.safetensors"
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(6, 2),
               "double_stream_modulation_img.lin.weight": torch.zeros(2, 2)}, str(flux2))
    assert refusal("--checkpoint", flux2) == ("flux2.safetensors holds a FLUX.2 model; kubik generate loads "
                                              "FLUX.1 dev and schnell")


def test_missing_t5_tokenizer_is_one_clear_line(flux_files, tokenizer_dir, tmp_path):
    status, text = run_kubik("generate", "a fox", "--checkpoint", flux_files["checkpoint"], "--tokenizer",
                             tokenizer_dir, "--t5-tokenizer", tmp_path, "--loras", "none", "--device", "cpu",
                             "--steps", 1, "--width", 64, "--height", 64, "--no-record", "--out", tmp_path / "out")
    assert status == 2         # after the plan, before any weight is read
    assert text.strip().splitlines()[-1] == (f"kubik generate: error: --t5-tokenizer {tmp_path.name}: no "
                                             "tokenizer.json there (T5's tokenizer, e.g. ComfyUI's "
                                             "comfy/text_encoders/t5_tokenizer)")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the header parsers, fuzzed

# The keys each parser reads, with FLUX.1-like tiny shapes; the fuzzer drops and reshapes them.
_TRANSFORMER = {"img_in.weight": [64, 64], "txt_in.weight": [64, 64], "vector_in.in_layer.weight": [64, 64],
                "guidance_in.in_layer.weight": [64, 256], "double_blocks.0.img_attn.qkv.weight": [192, 64],
                "double_blocks.0.img_attn.norm.query_norm.scale": [32], "double_blocks.0.img_mlp.0.weight": [256, 64],
                "single_blocks.0.linear1.weight": [448, 64]}
_TEXT = {"text_model.embeddings.token_embedding.weight": [49408, 64],
         "text_model.encoder.layers.0.mlp.fc1.weight": [128, 64],
         "text_model.embeddings.position_embedding.weight": [77, 64], "text_projection.weight": [64, 64],
         "shared.weight": [32128, 64],
         "encoder.block.0.layer.0.SelfAttention.q.weight": [64, 64],
         "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": [32, 4],
         "encoder.block.0.layer.1.DenseReluDense.wi_0.weight": [128, 64]}
_VAE = {"encoder.down.0.block.0.conv1.weight": [32, 32, 3, 3], "encoder.down.1.block.0.conv1.weight": [64, 32, 3, 3],
        "decoder.conv_in.weight": [64, 16, 3, 3]}


def _mutated(base):
    from hypothesis import strategies as st

    dims = st.lists(st.integers(min_value=-2, max_value=5000), max_size=5)
    return st.fixed_dictionaries({}, optional={key: st.one_of(st.just(shape), dims) for key, shape in base.items()})


def test_fuzz_flux_header_parsers_give_a_config_or_one_clear_error():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from kubik_core.checkpoints import CheckpointError
    from kubik_core.checkpoints.flux import transformer_config, vae_config
    from kubik_core.checkpoints.parts import clip_config, t5_config

    @settings(derandomize=True, max_examples=200, deadline=None)
    @given(_mutated(_TRANSFORMER), _mutated(_TEXT), _mutated(_VAE), st.booleans())
    def check(transformer, text, vae, clip):
        try:
            config = transformer_config(transformer, "x.safetensors")
            assert config["num_attention_heads"] * config["attention_head_dim"] == transformer["img_in.weight"][0]
            assert sum(config["axes_dims_rope"]) == config["attention_head_dim"]
        except CheckpointError as exc:
            assert "\n" not in str(exc)
        try:      # resolve_flux_files turns a KeyError into the file's one-line error
            (clip_config if clip else t5_config)(text)
        except KeyError:
            pass
        try:
            assert vae_config(vae, "ae.safetensors")["latent_channels"] == 16
        except CheckpointError as exc:
            assert "\n" not in str(exc)

    check()
