"""Crafted image-to-3D model files and configs: each case a real safetensors file (or JSON config)
written by the test and read through the real loader, the Load 3D Model node or the command line.

A model file carries its own config, written by whoever made the file. Findings of issue 15: a
config of a few hundred bytes could make the loader allocate tens of GB; config fields could name
files (``pretrained_file``, timm's ``checkpoint_path``, ``cache_dir``) or the network (a timm
``hf-hub:`` backbone). Now every config is checked against a bounded schema, and the model is built
on the meta device and compared with the file's header before anything is allocated.
"""
from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import save_file

from kubik_core import cli
from kubik_core.recon3d.models.config import ConfigError, load_config, parse_config_json
from kubik_core.recon3d.pipeline import ModelFileError, build_model, load_model, save_model
from kubik_core.recon3d.train.encode import read_latents

MICRO = {"vae": {"input_points": 256, "latent_tokens": 16, "latent_channels": 4, "width": 32, "heads": 2,
                 "encoder_layers": 1, "decoder_layers": 1, "fourier_frequencies": 4, "sdf_clip": 0.5},
         "image_encoder": {"image_size": 32,
                           "backbone_kwargs": {"img_size": 32, "depth": 1, "embed_dim": 32, "num_heads": 2}},
         "flow": {"width": 32, "depth": 1, "heads": 2, "mlp_ratio": 2.0}}


def micro_config() -> dict:
    """The tiny config shrunk, as the JSON object a file holds (the cases below change it as a writer could)."""
    return load_config("tiny", MICRO).to_dict()


def crafted_file(path, config, *, kind: str = "vae", tensors=None, info: str = "{}"):
    """A model file whose header says it is a KubikAI 3D model, with ``config`` (a dict, or JSON
    text as given) and the given tensors (default: one small tensor)."""
    text = config if isinstance(config, str) else json.dumps(config)
    save_file(tensors or {"latent_mean": torch.zeros(7)}, str(path),
              metadata={"kubik3d_format": "2", "kind": kind, "config": text, "info": info})
    return path


def with_change(section: str, key: str, value) -> dict:
    config = micro_config()
    config[section][key] = value
    return config


@pytest.mark.timeout(120)
def test_a_tiny_file_whose_config_asks_for_tens_of_gigabytes_is_refused_before_allocating(tmp_path):
    """The finding: a ~1.4 KB file made the loader build the model its config describes. The config
    below is within the schema's ranges (a model of about 40 G parameters); it is built on the
    meta device only and refused because the file's header holds none of its tensors."""
    config = micro_config()
    config["vae"].update(width=8192, heads=128, encoder_layers=64, decoder_layers=64, latent_channels=1024)
    config["flow"].update(width=8192, depth=64, heads=128, mlp_ratio=16.0)
    path = crafted_file(tmp_path / "huge.safetensors", config, kind="image-to-shape")
    assert path.stat().st_size < 2000
    with pytest.raises(ModelFileError, match=re.escape(
            "huge.safetensors: the weights do not match the model its config describes (missing ")
            + r"\d+ tensor\(s\): [^;]*\); the file is damaged or was edited after training: use a model file "
              r"written by `kubik 3d train-vae` / `train-flow`"):
        load_model(path)


def test_a_file_whose_tensors_differ_in_shape_from_its_config_is_refused(tmp_path):
    genuine = save_model(build_model(micro_config(), kind="vae"), tmp_path / "genuine.safetensors")
    assert load_model(genuine).kind == "vae"
    from safetensors.torch import load_file

    state = load_file(str(genuine))
    state["vae.to_sdf.1.weight"] = torch.zeros(64, 64)
    crafted_file(tmp_path / "edited.safetensors", micro_config(), tensors=state)
    with pytest.raises(ModelFileError, match=re.escape(
            "edited.safetensors: 1 tensor(s) have another shape than the config gives (vae.to_sdf.1.weight: "
            "file [64, 64], config [32, 32]); the file is damaged or was edited after training")):
        load_model(tmp_path / "edited.safetensors")


SCHEMA_CASES = [
    ("width_1e9", with_change("vae", "width", 10 ** 9), "vae.width must be from 8 to 8192, got 1000000000"),
    ("million_layers", with_change("flow", "depth", 1_000_000), "flow.depth must be from 1 to 64, got 1000000"),
    ("heads_as_text", with_change("vae", "heads", "2"), "vae.heads must be an integer, got '2'"),
    ("heads_as_bool", with_change("vae", "heads", True), "vae.heads must be an integer, got True"),
    ("width_not_divisible", with_change("vae", "width", 33), "vae.width 33 is not divisible by vae.heads 2"),
    ("negative_clip", with_change("vae", "sdf_clip", -1.0), "vae.sdf_clip must be from 1e-06 to 10, got -1.0"),
    ("unknown_sampler", with_change("sampling", "sampler", "ddim"), "sampling.sampler must be one of euler, heun, "
                                                                    "got 'ddim'"),
    ("cache_dir", with_change("image_encoder", "cache_dir", "/tmp/hub"),
     "unknown key image_encoder.cache_dir; known keys: backbone, backbone_kwargs, image_size, pretrained_file"),
    ("checkpoint_path", with_change("image_encoder", "backbone_kwargs", {"checkpoint_path": "/etc/passwd"}),
     "unknown key image_encoder.backbone_kwargs.checkpoint_path; known keys: img_size, patch_size, depth, "
     "embed_dim, num_heads, mlp_ratio, qkv_bias, class_token, reg_tokens, drop_rate, drop_path_rate"),
    ("pretrained_cfg", with_change("image_encoder", "backbone_kwargs", {"pretrained_cfg": {"file": "/x"}}),
     "unknown key image_encoder.backbone_kwargs.pretrained_cfg; known keys: img_size, patch_size, depth, "
     "embed_dim, num_heads, mlp_ratio, qkv_bias, class_token, reg_tokens, drop_rate, drop_path_rate"),
    ("hf_hub_backbone", with_change("image_encoder", "backbone", "hf-hub:timm/vit_tiny_patch16_224.augreg_in21k"),
     "image_encoder.backbone 'hf-hub:timm/vit_tiny_patch16_224.augreg_in21k' is not a timm architecture name "
     "(letters, digits, '_' and '.'; no hub or file names)"),
    ("file_backbone", with_change("image_encoder", "backbone", "../../weights/evil"),
     "image_encoder.backbone '../../weights/evil' is not a timm architecture name (letters, digits, '_' and '.'; "
     "no hub or file names)"),
    ("huge_image", with_change("image_encoder", "image_size", 100_000),
     "image_encoder.image_size must be from 8 to 1024, got 100000"),
    ("long_name", {**micro_config(), "name": "x" * 5000},
     "name must be a string of at most 200 characters, got '" + "x" * 56 + "..."),
    ("unknown_section", {**micro_config(), "optimizer": {}},
     "unknown key optimizer; known keys: name, description, vae, image_encoder, flow, train_vae, train_flow, sampling"),
    ("missing_section", {k: v for k, v in micro_config().items() if k != "flow"}, "flow is missing"),
]


@pytest.mark.parametrize("config, message", [c[1:] for c in SCHEMA_CASES], ids=[c[0] for c in SCHEMA_CASES])
def test_a_config_outside_the_schema_is_refused_naming_the_key(tmp_path, config, message):
    path = crafted_file(tmp_path / "crafted.safetensors", config)
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(info.value) == (f"crafted.safetensors: its config: {message}; use a model file written by "
                               "`kubik 3d train-vae` / `train-flow`")


JSON_CASES = [
    ("nan", json.dumps(micro_config()).replace('"sdf_clip": 0.5', '"sdf_clip": NaN'),
     "NaN is not a JSON number (only finite numbers are accepted)"),
    ("1e999", json.dumps(micro_config()).replace('"sdf_clip": 0.5', '"sdf_clip": 1e999'),
     "number 1e999 is out of range (not a finite float)"),
    ("deep", '{"vae": ' + "[" * 5000 + "]" * 5000 + "}", "JSON is nested 5001 levels deep (limit 8)"),
    ("huge_int", json.dumps(micro_config()).replace('"width": 32', '"width": ' + "9" * 5000),
     f"number {'9' * 40}... has 5000 digits (too large)"),
    ("not_json", "{vae: 1", "not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 "
                            "(char 1))"),
]


@pytest.mark.parametrize("text, message", [c[1:] for c in JSON_CASES], ids=[c[0] for c in JSON_CASES])
def test_a_config_that_is_not_bounded_json_is_refused(tmp_path, text, message):
    path = crafted_file(tmp_path / "crafted.safetensors", text)
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(info.value) == (f"crafted.safetensors: its config is not usable JSON: {message}; use a model "
                               "file written by `kubik 3d train-vae` / `train-flow`")


def test_a_config_that_is_a_list_and_info_that_is_not_an_object(tmp_path):
    with pytest.raises(ModelFileError, match=re.escape("crafted.safetensors: its config must be a JSON object, "
                                                       "not list")):
        load_model(crafted_file(tmp_path / "crafted.safetensors", "[1, 2]"))
    genuine = save_model(build_model(micro_config(), kind="vae"), tmp_path / "genuine.safetensors")
    from safetensors.torch import load_file

    crafted_file(tmp_path / "info.safetensors", micro_config(), tensors=load_file(str(genuine)), info="[[[]]]")
    with pytest.raises(ModelFileError, match=re.escape("info.safetensors: its info must be a JSON object, not list")):
        load_model(tmp_path / "info.safetensors")


def test_a_backbone_timm_does_not_know_is_refused_before_timm_builds_anything(tmp_path):
    path = crafted_file(tmp_path / "crafted.safetensors", with_change("image_encoder", "backbone", "resnet_9000"),
                        kind="image-to-shape")
    with pytest.raises(ModelFileError, match=re.escape(
            "crafted.safetensors: image encoder backbone 'resnet_9000' is not one of timm's built-in architectures "
            "(see timm.list_models()); hub and file names are not accepted")):
        load_model(path)


def test_a_pretrained_file_in_a_model_config_is_never_read(tmp_path):
    """Older files record ``image_encoder.pretrained_file``; before the fix loading such a file read
    that path (here: backbone weights filled with 7.0, or a path that does not exist)."""
    model = build_model(micro_config(), kind="image-to-shape")
    genuine = save_model(model, tmp_path / "genuine.safetensors")
    backbone = {k: torch.full_like(v, 7.0) for k, v in model.image_encoder.backbone.state_dict().items()}
    save_file(backbone, str(tmp_path / "weights.safetensors"))
    from safetensors.torch import load_file

    for name, recorded in (("elsewhere", str(tmp_path / "weights.safetensors")), ("missing", "/nonexistent/w.st")):
        config = micro_config()
        config["image_encoder"]["pretrained_file"] = recorded
        path = crafted_file(tmp_path / f"{name}.safetensors", config, kind="image-to-shape",
                            tensors=load_file(str(genuine)))
        loaded = load_model(path)
        for key, value in loaded.image_encoder.backbone.state_dict().items():
            assert torch.equal(value, model.image_encoder.backbone.state_dict()[key]), key


def test_the_load_node_names_the_file_as_chosen_and_the_fix(run_node, tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    crafted_file(tmp_path / "sub" / "crafted.safetensors", with_change("vae", "width", 10 ** 9))
    (tmp_path / "sub" / "header.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    monkeypatch.setenv("KUBIK_3D_MODELS_DIR", str(tmp_path))
    with pytest.raises(ValueError) as info:
        run_node("KubikLoad3DModel", model_name="sub/crafted.safetensors", device="cpu")
    assert str(info.value) == ("model_name: sub/crafted.safetensors: its config: vae.width must be from 8 to 8192, "
                               "got 1000000000; use a model file written by `kubik 3d train-vae` / `train-flow`")
    with pytest.raises(ValueError) as info:
        run_node("KubikLoad3DModel", model_name="sub/header.safetensors", device="cpu")
    assert str(info.value).startswith("model_name: sub/header.safetensors is not a readable safetensors file: ")
    assert str(tmp_path) not in str(info.value)


# ----------------------------------------------------------------------------- training configs
def run_kubik(capsys, *argv) -> tuple[int, str]:
    rc = cli.main([str(a) for a in argv])
    return rc, capsys.readouterr().err.strip()


def test_training_configs_and_set_values_meet_the_same_schema(tmp_path, capsys):
    (tmp_path / "huge.json").write_text('{"vae": ' + "[" * 3000 + "]" * 3000 + "}")
    config = micro_config()
    config["image_encoder"]["pretrained_file"] = str(tmp_path / "weights.safetensors")
    (tmp_path / "named.json").write_text(json.dumps(config))
    cases = [
        (["train-vae", tmp_path, "--config", tmp_path / "huge.json"],
         f"model config {tmp_path / 'huge.json'}: JSON is nested 3001 levels deep (limit 8)"),
        (["train-vae", tmp_path, "--set", "vae.width=" + "[" * 5000],
         "model config: vae.width must be an integer, got '" + "[" * 56 + "..."),
        (["train-vae", tmp_path, "--set", "train_vae.steps=0"],
         "model config: train_vae.steps must be from 1 to 1000000000, got 0"),
        (["train-vae", tmp_path, "--set", "vae.checkpoint_path=\"/etc/passwd\""],
         "model config: unknown key vae.checkpoint_path; known keys: input_points, latent_tokens, latent_channels, "
         "width, heads, encoder_layers, decoder_layers, fourier_frequencies, sdf_clip, query_field_layers, "
         "query_residual"),
        (["train-flow", tmp_path / "latents.safetensors", "--config", tmp_path / "named.json"],
         "config image_encoder.pretrained_file: a config names no files; pass the weights with "
         "--image-encoder-weights PATH"),
    ]
    for argv, message in cases:
        rc, err = run_kubik(capsys, "3d", *argv, "-o", tmp_path / "run")
        assert (rc, err) == (2, f"kubik 3d: error: {message}")
    assert not (tmp_path / "run").exists()


def test_config_files_are_refused_above_64_kb(tmp_path):
    (tmp_path / "big.json").write_text(json.dumps({**micro_config(), "description": "x" * 70000}))
    size = r"\d\d,\d\d\d bytes; a config is a few KB"
    with pytest.raises(ConfigError, match=re.escape(f"model config {tmp_path / 'big.json'} is ") + size):
        load_config(tmp_path / "big.json")
    with pytest.raises(ConfigError, match="description must be a string of at most 2000 characters"):
        parse_config_json(json.dumps({**micro_config(), "description": "x" * 3000}))


# ----------------------------------------------------------------------------- latents files
def latents_file(path, *, ids='["a/1", "a/2"]', datasets='["/data/a"]', vae_config=None, shapes=2, mean=None):
    tensors = {"mean": torch.zeros(shapes, 3, 16, 7) if mean is None else mean, "std": torch.ones(shapes, 3, 16, 7),
               "rotation": torch.eye(3).expand(shapes, 3, 3, 3).contiguous(), "scale": torch.ones(shapes, 3)}
    save_file(tensors, str(path), metadata={"ids": ids, "datasets": datasets, "vae": "/models/vae.safetensors",
                                            "vae_config": vae_config or json.dumps(micro_config()["vae"])})
    return path


def test_a_well_formed_latents_file_reads(tmp_path):
    tensors, metadata = read_latents(latents_file(tmp_path / "l.safetensors"))
    assert metadata["ids"] == ["a/1", "a/2"] and tensors["mean"].shape == (2, 3, 16, 7)


LATENT_CASES = [
    ("deep_ids", {"ids": "[" * 3000 + "]" * 3000}, "its ids entry is not usable JSON (JSON is nested 3000 levels "
                                                   "deep (limit 8))"),
    ("ids_not_a_list", {"ids": '{"a": 1}'}, "its ids entry must be a list of distinct shape ids"),
    ("repeated_ids", {"ids": '["a/1", "a/1"]'}, "its ids entry must be a list of distinct shape ids"),
    ("datasets_numbers", {"datasets": "[1, 2]"}, "its datasets entry must be a list of dataset folders"),
    ("vae_config_file", {"vae_config": json.dumps({**micro_config()["vae"], "cache_dir": "/tmp"})},
     "its vae_config: unknown key vae.cache_dir; known keys: input_points, latent_tokens, "
     "latent_channels, width, heads, encoder_layers, decoder_layers, fourier_frequencies, sdf_clip, "
     "query_field_layers, query_residual"),
    ("fewer_ids", {"ids": '["a/1"]'}, "tensor mean has shape [2, 3, 16, 7] (torch.float32); with 1 ids it must be "
                                      "float [1, 3, 16, 7]; make the file again with `kubik 3d encode`"),
    ("nan_mean", {"mean": torch.full((2, 3, 16, 7), float("nan"))},
     "tensor mean holds NaN or infinite values; make the file again with `kubik 3d encode`"),
]


@pytest.mark.parametrize("change, message", [c[1:] for c in LATENT_CASES], ids=[c[0] for c in LATENT_CASES])
def test_a_crafted_latents_file_is_refused_with_its_reason(tmp_path, change, message):
    path = latents_file(tmp_path / "l.safetensors", **change)
    with pytest.raises(ValueError) as info:
        read_latents(path)
    assert str(info.value) == f"{path}: {message}"


# ----------------------------------------------------------------------------- dataset folders
@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A real two-shape dataset folder made by `preprocess` (no renders)."""
    import trimesh

    from kubik_core.recon3d.data.preprocess import PreprocessConfig, preprocess_folder
    from kubik_core.recon3d.data.samples import SampleConfig

    root = tmp_path_factory.mktemp("dataset")
    (root / "meshes").mkdir()
    trimesh.creation.box().export(root / "meshes" / "box.obj")
    trimesh.creation.icosphere(subdivisions=2).export(root / "meshes" / "ball.ply")
    config = PreprocessConfig(samples=SampleConfig(surface=300, near=300, uniform=300), render=None, device="cpu")
    assert preprocess_folder(root / "meshes", root / "data", config)["done"] == 2
    return root / "data"


DATASET_CASES = [
    ("manifest.json", '{"meshes": [{"id": "../../etc"}]}',
     "manifest.json: 'meshes' must be a list of entries with plain folder names as ids; rebuild it with "
     "`kubik 3d preprocess`"),
    ("manifest.json", "[" * 5000, "manifest.json: cannot be read (JSON is nested 5000 levels deep (limit 64))"),
    ("manifest.json", '{"meshes": 5}', "manifest.json: 'meshes' must be a list of entries with plain folder names "
                                      "as ids; rebuild it with `kubik 3d preprocess`"),
    ("box/meta.json", '{"views": {"rgba": ["/etc/passwd"], "camera_to_world": []}}',
     "box/meta.json: its views must list plain file names and cameras; preprocess the mesh again"),
    ("box/meta.json", '{"views": 1e999}', "box/meta.json: cannot be read (number 1e999 is out of range (not a "
                                          "finite float))"),
    ("box/samples.npz", "not a zip archive", "box/samples.npz: not a usable samples file (damaged, or not written "
                                             "by `kubik 3d preprocess`); preprocess the mesh again"),
]


@pytest.mark.parametrize("name, content, message", DATASET_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(DATASET_CASES)])
def test_a_damaged_dataset_folder_is_refused_naming_the_file(dataset, tmp_path, name, content, message):
    import shutil

    from kubik_core.recon3d.data.shapes import ShapeSet

    copy = tmp_path / "data"
    shutil.copytree(dataset, copy)
    assert len(ShapeSet.load(copy, split="all")) == 2
    (copy / name).write_text(content)
    with pytest.raises(ValueError) as info:
        ShapeSet.load(copy, split="all")
    assert str(info.value) == f"{copy}/{message}"


def test_preprocess_redoes_a_mesh_whose_meta_json_is_hostile(tmp_path):
    """A meta.json nested 3,000 deep in the output folder raised RecursionError in the resume check."""
    import trimesh

    from kubik_core.recon3d.data.preprocess import PreprocessConfig, preprocess_folder
    from kubik_core.recon3d.data.samples import SampleConfig

    trimesh.creation.box().export(tmp_path / "box.obj")
    (tmp_path / "out" / "box").mkdir(parents=True)
    (tmp_path / "out" / "box" / "meta.json").write_text("[" * 3000 + "]" * 3000)
    config = PreprocessConfig(samples=SampleConfig(surface=100, near=100, uniform=100), render=None, device="cpu")
    report = preprocess_folder(tmp_path / "box.obj", tmp_path / "out", config)
    assert (report["done"], report["skipped"], report["failed"]) == (1, 0, [])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [m["id"] for m in manifest["meshes"]] == ["box"]
