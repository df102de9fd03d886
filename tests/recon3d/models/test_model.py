"""Image-to-3D model: file format and its bad inputs, latents -> SDF."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh

from kubik_core.recon3d.models.config import ModelConfig, load_config
from kubik_core.recon3d.pipeline import (ModelFileError, build_model, image_to_latent, load_model, mesh_to_latent,
                                         save_model, sdf_function)

MICRO = {"vae": {"input_points": 256, "latent_tokens": 16, "latent_channels": 4, "width": 32, "heads": 2,
                 "encoder_layers": 1, "decoder_layers": 1, "fourier_frequencies": 4, "sdf_clip": 0.5},
         "image_encoder": {"image_size": 32,
                           "backbone_kwargs": {"img_size": 32, "depth": 1, "embed_dim": 32, "num_heads": 2}},
         "flow": {"width": 32, "depth": 1, "heads": 2, "mlp_ratio": 2.0}}


def micro_config() -> ModelConfig:
    """The tiny config shrunk further, so tests build and train models in seconds."""
    return load_config("tiny", MICRO)


def test_configs_are_data_and_overrides_merge_per_section():
    tiny, base = load_config("tiny"), load_config("base")
    assert base.vae.latent_tokens > tiny.vae.latent_tokens
    config = load_config("tiny", {"train_vae": {"steps": 7}})
    assert config.train_vae.steps == 7 and config.train_vae.lr == tiny.train_vae.lr
    with pytest.raises(ValueError, match="unknown model config 'huge'"):
        load_config("huge")
    with pytest.raises(ValueError, match="unknown config section 'optimizer'"):
        load_config("tiny", {"optimizer": {}})


def test_model_file_round_trip_gives_identical_outputs(tmp_path):
    model = build_model(micro_config(), seed=3)
    path = save_model(model, tmp_path / "m.safetensors", info={"note": "test"})
    loaded = load_model(path)
    assert loaded.kind == "image-to-shape" and loaded.name == "m" and loaded.info == {"note": "test"}
    assert json.loads((tmp_path / "m.json").read_text())["kind"] == "image-to-shape"
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.7)
    points = torch.rand(500, 3) * 2 - 1
    a = sdf_function(mesh_to_latent(model, sphere.vertices, sphere.faces))(points)
    b = sdf_function(mesh_to_latent(loaded, sphere.vertices, sphere.faces))(points)
    assert torch.equal(a, b)
    pixels = torch.rand(2, 3, 32, 32)
    assert torch.equal(image_to_latent(model, pixels, seed=5, steps=3).latents,
                       image_to_latent(loaded, pixels, seed=5, steps=3).latents)


def test_half_precision_file_is_half_the_size_and_loads_as_float32(tmp_path):
    model = build_model(micro_config())
    full = save_model(model, tmp_path / "full.safetensors")
    half = save_model(model, tmp_path / "half.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model(half)
    assert next(loaded.parameters()).dtype == torch.float32
    reference = next(model.parameters()).detach()
    assert torch.allclose(next(loaded.parameters()), reference, atol=1e-3)


def test_wrong_files_are_refused_with_the_reason(tmp_path):
    from safetensors.torch import save_file

    vae_only = save_model(build_model(micro_config(), kind="vae"), tmp_path / "vae.safetensors")
    with pytest.raises(ModelFileError, match="is a 'vae' model, but a 'image-to-shape' model is needed"):
        load_model(vae_only, kind="image-to-shape")
    with pytest.raises(ModelFileError, match="has no image encoder"):
        image_to_latent(load_model(vae_only), torch.rand(1, 3, 32, 32))

    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.lora_down.weight": torch.zeros(4, 4)}, str(lora))
    with pytest.raises(ModelFileError, match="not a KubikAI 3D model.*lora_unet_down"):
        load_model(lora)

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(vae_only.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="truncated|corrupt|readable"):
        load_model(truncated)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")


def test_nan_weights_from_a_diverged_run_are_refused(tmp_path):
    model = build_model(micro_config(), kind="vae")
    with torch.no_grad():
        model.vae.to_sdf[1].weight[0, 0] = float("nan")
    path = save_model(model, tmp_path / "diverged.safetensors")
    with pytest.raises(ModelFileError, match="NaN or infinite weights.*vae.to_sdf.1.weight.*diverged"):
        load_model(path)


def test_mesh_to_latent_normalises_any_units():
    model = build_model(micro_config(), kind="vae")
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    small = mesh_to_latent(model, sphere.vertices * 1e-3 + 5.0, sphere.faces, seed=1).latents
    large = mesh_to_latent(model, sphere.vertices * 1e3, sphere.faces, seed=1).latents
    assert torch.allclose(small, large, atol=1e-4)
    with pytest.raises(ValueError, match="no faces"):
        mesh_to_latent(model, np.zeros((3, 3)), np.zeros((0, 3), int))


def test_latent_tokens_carry_their_anchor_on_the_surface_unnoised_and_outside_the_kl():
    from kubik_core.recon3d.models.vae import POSITION_CHANNELS

    model = build_model(micro_config(), kind="vae")
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.8)
    latents = mesh_to_latent(model, sphere.vertices, sphere.faces).latents
    assert latents.shape == (1, 16, POSITION_CHANNELS + 4) == (1, 16, model.vae.token_channels)
    anchors = latents[0, :, :POSITION_CHANNELS]
    # normalize() scales the sphere to a longest side of 1.9: every anchor lies on radius 0.95
    assert torch.allclose(anchors.norm(dim=1), torch.full((16,), 0.95), atol=0.02)
    assert torch.cdist(anchors, anchors).add(torch.eye(16)).min() > 0.1   # spread out (farthest points)

    points = torch.from_numpy(trimesh.sample.sample_surface(sphere, 256, seed=0)[0]).float()[None]
    mean, logvar = model.vae.encode(points, points / points.norm(dim=-1, keepdim=True))
    sampled = model.vae.sample(mean, torch.zeros_like(logvar), torch.Generator().manual_seed(0))
    assert torch.equal(sampled[..., :POSITION_CHANNELS], mean[..., :POSITION_CHANNELS])
    assert not torch.allclose(sampled[..., POSITION_CHANNELS:], mean[..., POSITION_CHANNELS:])
    far_anchors = mean.clone()
    far_anchors[..., :POSITION_CHANNELS] += 100.0
    assert torch.equal(model.vae.kl(far_anchors, logvar), model.vae.kl(mean, logvar))


def test_query_attention_prefers_tokens_near_the_query():
    """The distance term: moving one token's anchor next to a query changes that query's SDF far
    more than the SDF at the other end of the box."""
    from kubik_core.recon3d.pipeline import ShapeLatent

    model = build_model(micro_config(), kind="vae")
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.8)
    latents = mesh_to_latent(model, sphere.vertices, sphere.faces).latents
    queries = torch.tensor([[0.9, 0.0, 0.0], [-0.9, 0.0, 0.0]])
    before = sdf_function(ShapeLatent(latents, model))(queries)
    moved = latents.clone()
    moved[0, 0, :3] = queries[0]
    moved[0, 0, 3:] = 5.0
    change = (sdf_function(ShapeLatent(moved, model))(queries) - before).abs()
    assert change[0] > 3 * change[1]


def test_files_of_an_older_format_are_refused_with_the_reason(tmp_path):
    from safetensors.torch import load_file, save_file

    path = save_model(build_model(micro_config(), kind="vae"), tmp_path / "old.safetensors")
    from kubik_core.recon3d.models.shape_model import read_header

    metadata = dict(read_header(path), kubik3d_format="1")
    save_file(load_file(str(path)), str(path), metadata=metadata)
    with pytest.raises(ModelFileError, match="format 1.*reads format 2.*anchor position.*retrain"):
        load_model(path)


def test_canonical_token_order_ignores_the_incoming_order_and_follows_the_template():
    from kubik_core.recon3d.models.vae import canonical_token_order, token_template

    template = token_template(16)
    assert template.shape == (16, 3) and template.abs().max() <= 0.75
    # anchors = the template slightly moved, features tagging each token; then shuffled
    latents = torch.cat([template + 0.01 * torch.randn(16, 3), torch.arange(16.0)[:, None]], dim=1)[None]
    shuffled = latents[:, torch.randperm(16, generator=torch.Generator().manual_seed(0))]
    ordered = shuffled.gather(1, canonical_token_order(shuffled)[..., None].expand_as(shuffled))
    assert torch.equal(ordered, latents)   # token k is the one at slot k, whatever order it came in


def test_decoder_batches_shrink_so_the_distance_bias_stays_bounded():
    from kubik_core.recon3d.pipeline import query_chunk_size

    assert query_chunk_size(build_model("tiny", kind="vae")) == 65536
    many = build_model(load_config("tiny", {"vae": {"latent_tokens": 512, "heads": 8}}), kind="vae")
    points = query_chunk_size(many)
    assert points == 8192 and points * 512 * 8 * 4 <= 128 << 20   # float32 bias [heads, points, tokens]
