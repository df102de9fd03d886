"""InstantX's SD3.5 IP-Adapter and SigLIP encoders on bad input: one clear line each, from headers
and configs only (no ComfyUI, nothing loaded).

- the adapter given with an SDXL or a FLUX.1 checkpoint (small header-only files with each kind's
  key names, as test_generate_adapters.py writes them): exit status 2 and one line naming both;
- SigLIP encoders: ComfyUI's single so400m file gets ComfyUI's so400m settings from its shapes; a
  CLIP file, an unknown tower and bad folder configs are one line; the folder config parser fuzzed.
"""
from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from kubik_core.generate.ip_adapter import IPAdapterError
from kubik_core.generate.siglip_encoder import _single_file_config, inspect_siglip

from .test_generate_adapters import FLUX, SDXL, _file, _generate, _picture

pytestmark = pytest.mark.timeout(120)

SIGLIP_FIX = ("give google/siglip-so400m-patch14-384's folder (config.json and model.safetensors) or ComfyUI's "
              "sigclip_vision_patch14_384.safetensors")


def _instantx_adapter(folder, suffix: str):
    """A tiny InstantX-layout adapter for a 128-wide, 2-block MMDiT (its header is all it needs)."""
    from kubik_testing.tiny_ip_adapter import write_tiny_instantx_sd3_ip_adapter

    mmdit = _file(folder / "mmdit.safetensors", {
        "model.diffusion_model.x_embedder.proj.weight": (128, 16, 2, 2),
        **{f"model.diffusion_model.joint_blocks.{n}.x_block.attn.qkv.weight": (1, 1) for n in (0, 1)}})
    return write_tiny_instantx_sd3_ip_adapter(folder / f"ip-adapter{suffix}", mmdit, 32)


@pytest.mark.parametrize("checkpoint, suffix, family", [(SDXL, ".bin", "SDXL"), (FLUX, ".safetensors", "FLUX")])
def test_instantx_sd3_adapter_with_another_family_is_one_line(tmp_path, checkpoint, suffix, family):
    adapter = _instantx_adapter(tmp_path, suffix)
    status, err = _generate(tmp_path, checkpoint, "--ip-adapter", adapter, "--reference", _picture(tmp_path / "r.png"))
    assert (status, err) == (2, f"kubik generate: error: --ip-adapter: ip-adapter{suffix} is InstantX's SD3.5 Large "
                                f"IP-Adapter but the checkpoint is {family}; give an IP-Adapter of the checkpoint's "
                                "family")


def _so400m(prefix="vision_model.") -> dict:
    shapes = {f"{prefix}embeddings.patch_embedding.weight": (1152, 3, 14, 14),
              f"{prefix}embeddings.position_embedding.weight": (729, 1152),
              f"{prefix}post_layernorm.weight": (1152,)}
    for layer in range(27):
        shapes[f"{prefix}encoder.layers.{layer}.mlp.fc1.weight"] = (4304, 1152)
    return shapes


def test_comfyuis_single_so400m_file_gets_comfyuis_settings():
    # the values of ComfyUI's comfy/clip_vision_siglip_384.json, told from the shapes alone
    expected = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                    image_size=384, patch_size=14, num_channels=3, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)
    assert _single_file_config(_so400m(), "sigclip_vision_patch14_384.safetensors") == expected
    assert _single_file_config(_so400m(""), "saved-by-transformers-5.safetensors") == expected


@pytest.mark.parametrize("shapes, message", [
    ({**_so400m(), "visual_projection.weight": (768, 1024)},
     f"--image-encoder: f.safetensors is a CLIP vision model, but InstantX's IP-Adapters read SigLIP's hidden states; "
     f"{SIGLIP_FIX}"),
    ({**_so400m(), "vision_model.embeddings.class_embedding": (1152,)},
     f"--image-encoder: f.safetensors is a CLIP vision model, but InstantX's IP-Adapters read SigLIP's hidden states; "
     f"{SIGLIP_FIX}"),
    ({k: v for k, v in _so400m().items() if "layers.26." not in k},
     "--image-encoder: f.safetensors is a 26-layer, 1152-wide vision tower with 729 positions, not a SigLIP so400m "
     "(384 or 512) whose settings are known; give its folder with config.json"),
    ({"text_model.embeddings.token_embedding.weight": (8, 8)},
     "--image-encoder: f.safetensors is not a SigLIP vision model in transformers' layout (vision_model.embeddings.*, "
     f"vision_model.encoder.layers.*); {SIGLIP_FIX}"),
    ({**_so400m(), "vision_model.embeddings.position_embedding.weight": ()},     # 0-D: was an IndexError traceback
     "--image-encoder: f.safetensors is not a SigLIP vision model in transformers' layout (vision_model.embeddings.*, "
     f"vision_model.encoder.layers.*); {SIGLIP_FIX}"),
])
def test_bad_single_file_encoders_are_one_line(shapes, message):
    with pytest.raises(IPAdapterError) as caught:
        _single_file_config(shapes, "f.safetensors")
    assert str(caught.value) == message


def _folder(path, config) -> str:
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return str(path)


TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
         "image_size": 32, "patch_size": 8}


def test_siglip_folders_whole_model_or_tower(tmp_path):
    whole = inspect_siglip(_folder(tmp_path / "siglip-so400m", {"model_type": "siglip", "vision_config": TOWER,
                                                                "text_config": {"hidden_size": 8}}))
    tower = inspect_siglip(_folder(tmp_path / "tower", {"model_type": "siglip_vision_model", **TOWER,
                                                        "hidden_act": "gelu", "layer_norm_eps": 1e-5}))
    assert (whole.hidden_size, whole.image_size, whole.single_file_config["hidden_act"]) == \
        (32, 32, "gelu_pytorch_tanh")
    assert (tower.single_file_config["hidden_act"], tower.single_file_config["layer_norm_eps"]) == ("gelu", 1e-5)


@pytest.mark.parametrize("config, message", [
    ({"model_type": "siglip_vision_model", **TOWER, "hidden_act": "os.system"},
     "--image-encoder: enc: config.json's hidden_act must be one of gelu_pytorch_tanh, gelu, quick_gelu, gelu_new "
     "and layer_norm_eps between 0 and 1"),
    ({"model_type": "siglip_vision_model", **TOWER, "hidden_size": 10**9},
     "--image-encoder: enc: config.json's hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, "
     "image_size, patch_size, num_channels must be whole numbers from 1 to 16384"),
    ({"model_type": "siglip_vision_model", "hidden_size": 32},
     f"--image-encoder: enc: config.json has no intermediate_size; {SIGLIP_FIX}"),
    ({"model_type": "dinov2", **TOWER},
     f"--image-encoder: enc holds a dinov2 model, not the SigLIP vision encoder InstantX's IP-Adapters read; "
     f"{SIGLIP_FIX}"),
    ({"model_type": "dino\nv2", **TOWER},      # the line used to break inside the model type, losing the fix
     f"--image-encoder: enc holds a dino v2 model, not the SigLIP vision encoder InstantX's IP-Adapters read; "
     f"{SIGLIP_FIX}"),
])
def test_bad_siglip_folder_configs_are_one_line(tmp_path, config, message):
    with pytest.raises(IPAdapterError) as caught:
        inspect_siglip(_folder(tmp_path / "enc", config))
    assert str(caught.value) == message


def test_a_siglip_folder_whose_weights_do_not_match_its_config_is_one_line(tmp_path):
    from kubik_core.generate.siglip_encoder import load_siglip
    from kubik_testing.tiny_vision import tiny_siglip_vision

    folder = tiny_siglip_vision(tmp_path / "siglip")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": 96}))
    with pytest.raises(IPAdapterError) as caught:
        load_siglip(inspect_siglip(folder))
    assert str(caught.value).startswith("--image-encoder: siglip: ") and "another shape" in str(caught.value)
    save_file({"embeddings.patch_embedding.weight": torch.zeros(1)}, str(folder / "model.safetensors"))
    with pytest.raises(IPAdapterError) as caught:
        load_siglip(inspect_siglip(folder))
    assert str(caught.value).startswith("--image-encoder: siglip: the weights do not match the model its config "
                                        "describes (missing ")


_VALUES = st.one_of(st.integers(-5, 20000), st.floats(allow_nan=True), st.booleans(), st.text(max_size=8),
                    st.none(), st.lists(st.integers(), max_size=2))


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([*TOWER, "model_type", "hidden_act", "layer_norm_eps", "num_channels",
                                        "vision_config"]), _VALUES, max_size=10))
def test_fuzz_siglip_folder_configs_give_a_layout_or_one_line(tmp_path_factory, config):
    folder = tmp_path_factory.mktemp("fuzz")
    try:
        layout = inspect_siglip(_folder(folder / "enc", {**config, "model_type": "siglip_vision_model"}
                                        if len(config) % 2 else config))
    except IPAdapterError as exc:
        assert str(exc).startswith("--image-encoder: enc") and "\n" not in str(exc)
    else:
        assert 0 < layout.hidden_size <= 16384 and 0 < layout.image_size <= 16384


def test_googles_whole_siglip_folder_gives_its_vision_tower(tmp_path):
    """google/siglip-so400m-patch14-384 is a whole SiglipModel (``vision_model.*`` beside the text
    tower): the encoder read from it is its vision tower, text tensors left unread."""
    from transformers import SiglipConfig, SiglipModel

    from kubik_core.generate.siglip_encoder import load_siglip

    torch.manual_seed(3)
    whole = SiglipModel(SiglipConfig(vision_config=TOWER, text_config={
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "vocab_size": 100, "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1})).eval()
    whole.save_pretrained(tmp_path / "siglip-so400m-patch14-384")
    encoder = load_siglip(inspect_siglip(tmp_path / "siglip-so400m-patch14-384"))
    pixels = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = whole.vision_model(pixels, output_hidden_states=True).hidden_states[-2]
        found = encoder(pixels, output_hidden_states=True).hidden_states[-2]
    torch.testing.assert_close(found, expected)


def test_an_adapter_with_a_lone_far_resampler_layer_is_one_line(tmp_path):
    """One tensor named ``layers.999999999`` made the meta-device check build a billion resampler
    layers (a hang); the layers must be numbered from 0 without gaps."""
    from safetensors.torch import load_file

    from kubik_core.generate.sd3_ip_adapter import inspect_sd3_adapter, read_shapes

    tensors = load_file(str(_instantx_adapter(tmp_path, ".safetensors")))
    save_file({**tensors, "image_proj.layers.999999999.0.norm1.weight": torch.ones(1)}, str(tmp_path / "far.safetensors"))
    with pytest.raises(IPAdapterError) as caught:
        inspect_sd3_adapter(read_shapes(tmp_path / "far.safetensors"), "far.safetensors")
    assert str(caught.value) == ("--ip-adapter: far.safetensors: its resampler layers are numbered 0..999999999 "
                                 "(2 layers), not from 0 without gaps; give InstantX's SD3.5-Large-IP-Adapter "
                                 "ip-adapter.bin as released, or its .safetensors conversion")


@pytest.mark.parametrize("claim", [
    lambda: torch.zeros(1).as_strided((1, 10**9, 64), (0, 0, 0)),
    lambda: torch.sparse_coo_tensor(torch.zeros(3, 1, dtype=torch.long), torch.ones(1), (1, 10**9, 64)),
    lambda: torch.empty(1, 10**9, 64, device="meta"),
], ids=["stride-0 view", "sparse", "meta"])
def test_a_bin_tensor_claiming_more_than_it_stores_is_one_line(tmp_path, claim):
    """A torch file can hold a huge shape over a few stored bytes (here 10**9 image tokens), which
    the real modules would then allocate; a sparse one was a NotImplementedError traceback."""
    from kubik_core.generate.sd3_ip_adapter import read_shapes

    parts = torch.load(_instantx_adapter(tmp_path, ".bin"), weights_only=True)
    parts["image_proj"]["latents"] = claim()
    torch.save(parts, tmp_path / "views.bin")
    with pytest.raises(IPAdapterError) as caught:
        read_shapes(tmp_path / "views.bin")
    assert str(caught.value) == ("--ip-adapter: views.bin: 'image_proj.latents' claims shape [1, 1000000000, 64] "
                                 "without storing its values (a strided view, sparse or meta tensor); give InstantX's "
                                 "SD3.5-Large-IP-Adapter ip-adapter.bin as released, or its .safetensors conversion")


def test_a_bin_with_quantized_weights_is_one_line(tmp_path):
    """Planned fine, then failed while loading with a RuntimeError traceback (.float() of qint8)."""
    import warnings

    from kubik_core.generate.sd3_ip_adapter import read_shapes

    parts = torch.load(_instantx_adapter(tmp_path, ".bin"), weights_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)       # torch's deprecation of quantized tensors
        parts["image_proj"]["latents"] = torch.quantize_per_tensor(parts["image_proj"]["latents"], 0.1, 0, torch.qint8)
    torch.save(parts, tmp_path / "q.bin")
    with pytest.raises(IPAdapterError) as caught:
        read_shapes(tmp_path / "q.bin")
    assert str(caught.value) == ("--ip-adapter: q.bin: 'image_proj.latents' holds qint8 values, not floating-point "
                                 "weights; give InstantX's SD3.5-Large-IP-Adapter ip-adapter.bin as released, or its "
                                 ".safetensors conversion")


def test_a_siglip_config_transformers_refuses_names_the_fix(tmp_path):
    """Heads that do not divide the width: the line used to end at transformers' reason, with no fix."""
    from kubik_core.generate.siglip_encoder import load_siglip
    from kubik_testing.tiny_vision import tiny_siglip_vision

    folder = tiny_siglip_vision(tmp_path / "siglip")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 32, "num_attention_heads": 3}))
    with pytest.raises(IPAdapterError) as caught:
        load_siglip(inspect_siglip(folder))
    assert str(caught.value) == ("--image-encoder: siglip: its config does not describe a SigLIP vision model "
                                 "(embed_dim must be divisible by num_heads (got `embed_dim`: 32 and `num_heads`: 3).); "
                                 f"{SIGLIP_FIX}")
