"""Typed model configs: the dataclasses agree with the schema, write the JSON a file held, and read
model files written before configs were typed."""
from __future__ import annotations

import json
from dataclasses import MISSING, fields, replace
from typing import get_type_hints

import pytest
import torch
import trimesh

from kubik_core.recon3d.models.config import (BACKBONE_KWARGS, CONFIG_DIR, SCHEMA, SECTION_TYPES, SECTIONS, TOP_LEVEL,
                                              BackboneKwargs, ConfigError, ConfigSection, ModelConfig, _check_value,
                                              config_names, load_config)
from kubik_core.recon3d.models.shape_model import read_header
from kubik_core.recon3d.pipeline import build_model, image_to_latent, load_model, mesh_to_latent, save_model, sdf_function

from .test_model import micro_config

TYPED = [*SECTION_TYPES.values(), BackboneKwargs, ModelConfig]


@pytest.mark.parametrize("cls", TYPED, ids=[c.__name__ for c in TYPED])
def test_each_typed_section_has_the_schema_keys_in_order_their_types_and_valid_defaults(cls):
    """The schema is the one statement of ranges; a key added to one side only fails here."""
    schema, hints = cls.fields_schema, get_type_hints(cls)
    assert [f.name for f in fields(cls)] == list(schema)
    for item in fields(cls):
        rule = schema[item.name]
        has_default = item.default is not MISSING or item.default_factory is not MISSING
        assert has_default == (not rule.required), f"{cls.__name__}.{item.name}: default iff optional"
        default = item.default_factory() if item.default_factory is not MISSING else item.default
        hint = hints[item.name]
        if rule.kind is dict:
            assert issubclass(hint, ConfigSection) and hint.path == (f"{cls.path}." if cls.path else "") + item.name
        elif has_default and default is None:
            assert hint == (rule.kind | None), item.name
        else:
            assert hint is rule.kind, item.name
        if has_default and default is not None:
            _check_value(default.to_dict() if isinstance(default, ConfigSection) else default, rule, item.name, "default")


def test_the_sections_are_the_schema_sections():
    assert {name: cls.fields_schema for name, cls in SECTION_TYPES.items()} == {s: SCHEMA[s] for s in SECTIONS}
    assert BackboneKwargs.fields_schema is BACKBONE_KWARGS
    assert list(ModelConfig.fields_schema) == [*TOP_LEVEL, *SECTIONS]


@pytest.mark.parametrize("name", config_names())
def test_shipped_configs_round_trip_to_the_same_json_text(name):
    text = (CONFIG_DIR / f"{name}.json").read_text()
    config = load_config(name)
    assert json.dumps(config.to_dict()) == json.dumps(json.loads(text))   # same keys, values and order
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert config.vae.heads == json.loads(text)["vae"]["heads"]


def test_a_saved_model_file_carries_the_config_text_the_untyped_code_wrote(tmp_path):
    """Before typed configs, save_model wrote json.dumps of the config dict as loaded from its file."""
    path = save_model(build_model("tiny", kind="vae"), tmp_path / "tiny.safetensors")
    expected = json.dumps(json.loads((CONFIG_DIR / "tiny.json").read_text()))
    assert read_header(path)["config"] == expected
    assert json.loads((tmp_path / "tiny.json").read_text())["config"] == json.loads(expected)


def _older_config() -> dict:
    """The micro config as an older file wrote it: no optional keys, sections in another order."""
    config = micro_config().to_dict()
    for section, key in (("vae", "query_field_layers"), ("vae", "query_residual"), ("image_encoder", "pretrained_file"),
                         ("train_vae", "eikonal_weight"), ("train_vae", "sign_weight"),
                         ("train_vae", "sign_temperature"), ("train_vae", "ema_decay"), ("train_flow", "ema_decay")):
        del config[section][key]
    del config["description"]
    return {key: config[key] for key in reversed(list(config))}


def test_a_model_file_written_the_old_way_loads_with_the_defaults_it_was_trained_with(tmp_path):
    """A file as the untyped save_model wrote it (metadata and JSON twin by hand, as that code did),
    with a config of an older release that left the optional keys out."""
    from safetensors.torch import save

    older = _older_config()
    model = build_model(older, seed=4)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {"kubik3d_format": "2", "kind": "image-to-shape", "name": "old",
                "config": json.dumps(older), "info": json.dumps({"trainer": "train-flow"})}
    path = tmp_path / "old.safetensors"
    path.write_bytes(save(state, metadata=metadata))
    (tmp_path / "old.json").write_text(json.dumps({"format": "2", "kind": "image-to-shape", "config": older,
                                                   "info": {"trainer": "train-flow"}}))

    loaded = load_model(path)
    assert loaded.config == ModelConfig.from_dict(older) and loaded.info == {"trainer": "train-flow"}
    assert (loaded.config.vae.query_field_layers, loaded.config.vae.query_residual) == (2, True)
    assert (loaded.config.train_vae.sign_weight, loaded.config.train_vae.sign_temperature) == (0.0, 0.01)
    assert loaded.config.train_flow.ema_decay == 0.0 and loaded.config.image_encoder.pretrained_file is None
    assert loaded.config.name == "tiny" and loaded.config.description is None
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.7)
    points = torch.rand(200, 3) * 2 - 1
    assert torch.equal(sdf_function(mesh_to_latent(model, sphere.vertices, sphere.faces))(points),
                       sdf_function(mesh_to_latent(loaded, sphere.vertices, sphere.faces))(points))
    pixels = torch.rand(1, 3, 32, 32)
    assert torch.equal(image_to_latent(model, pixels, seed=2, steps=2).latents,
                       image_to_latent(loaded, pixels, seed=2, steps=2).latents)

    # Saved again, the config states the defaults it was read with, in the schema's order.
    again = json.loads(read_header(save_model(loaded, tmp_path / "again.safetensors"))["config"])
    assert list(again) == [key for key in ModelConfig.fields_schema if key in again]
    assert again["vae"] == {**older["vae"], "query_field_layers": 2, "query_residual": True}
    assert load_model(tmp_path / "again.safetensors").config == loaded.config


def test_a_config_made_in_code_meets_the_schema_too():
    config = micro_config()
    assert replace(config.train_vae, steps=10).steps == 10 and config.train_vae.steps != 10
    with pytest.raises(ConfigError, match=r"^TrainVAEConfig: train_vae.steps must be from 1 to 1000000000, got 0$"):
        replace(config.train_vae, steps=0)
    with pytest.raises(ConfigError, match=r"^VAEConfig: vae.width must be an integer, got '32'$"):
        replace(config.vae, width="32")
    with pytest.raises(ConfigError, match=r"^ModelConfig: vae.width 31 is not divisible by vae.heads 2$"):
        replace(config, vae=replace(config.vae, width=31))
    with pytest.raises(ConfigError, match="sampling.sampler must be one of euler, heun, got 'ddim'"):
        replace(config.sampling, sampler="ddim")
    with pytest.raises(AttributeError):
        config.vae.width = 64   # frozen


def test_the_networks_take_their_own_typed_section():
    from kubik_core.recon3d.models.vae import ShapeVAE

    config = micro_config()
    vae = ShapeVAE(config.vae)
    assert vae.config is config.vae and len(vae.encoder_blocks) == config.vae.encoder_layers
    assert build_model(config, kind="vae").config is config
