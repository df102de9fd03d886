"""Training commands on a small procedural dataset: the VAE learns, runs resume, encode feeds the flow,
the flow run writes a model that reconstructs a mesh from a render."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from kubik_core.recon3d.data.shapes import ShapeSet, is_held_out, view_frame

from ..models.test_model import MICRO, micro_config

SMALL = ("--surface", "1024", "--near", "1024", "--uniform", "1024")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Twelve procedural shapes with two 48-px renders each (skips without a render backend)."""
    from kubik_core.recon3d.data.preprocess import PreprocessConfig, preprocess_folder
    from kubik_core.recon3d.data.render import MeshRenderer, RenderBackendError, RenderConfig
    from kubik_core.recon3d.data.samples import SampleConfig
    from kubik_core.recon3d.data.synth import write_synthetic_meshes

    render = RenderConfig(views=2, ring=1, resolution=48)
    try:
        MeshRenderer(render).close()
    except RenderBackendError as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("shapes")
    write_synthetic_meshes(root / "meshes", 12, seed=4)
    config = PreprocessConfig(samples=SampleConfig(surface=1024, near=1024, uniform=1024), render=render)
    report = preprocess_folder(root / "meshes", root / "dataset", config)
    assert report["done"] == 12
    return root / "dataset"


def _overrides(steps: int) -> dict:
    return {**MICRO, "train_vae": {"steps": steps, "batch_size": 4, "query_points": 512, "warmup_steps": 5},
            "train_flow": {"steps": steps, "batch_size": 4, "warmup_steps": 5}}


def test_split_is_stable_and_disjoint(dataset):
    ids = ShapeSet.load(dataset, split="all").ids
    train, val = ShapeSet.load(dataset, split="train").ids, ShapeSet.load(dataset, holdout_percent=30, split="val").ids
    assert set(train) | set(ShapeSet.load(dataset, split="val").ids if any(is_held_out(i, 5) for i in ids) else []) == set(ids)
    assert all(is_held_out(i, 30) for i in val) and val == [i for i in ids if is_held_out(i, 30)]


def test_view_frame_turns_the_shape_to_face_the_camera_and_refits_the_box():
    points = torch.tensor([[0.95, 0.0, 0.0], [-0.95, 0.5, 0.95], [0.0, -0.95, -0.95]])
    camera_on_x = [[0, 0, 1, 3.0], [0, 1, 0, 0.0], [-1, 0, 0, 0.0], [0, 0, 0, 1]]
    rotation, scale = view_frame(camera_on_x, points)
    assert torch.allclose(rotation @ torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 3.0]), atol=1e-6)
    assert torch.allclose(rotation @ torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]))  # Y stays up
    assert abs((scale * points @ rotation.T).abs().max().item() - 0.95) < 1e-6
    camera_on_z = [[1, 0, 0, 0.0], [0, 1, 0, 0.0], [0, 0, 1, 3.0], [0, 0, 0, 1]]
    rotation, scale = view_frame(camera_on_z, points)
    assert torch.allclose(rotation, torch.eye(3), atol=1e-6) and abs(scale - 1.0) < 1e-6


def test_vae_loss_falls_and_a_run_resumes_where_it_stopped(dataset, tmp_path):
    from kubik_core.recon3d.train.vae import train_vae

    out = tmp_path / "vae"
    kwargs = dict(config="tiny", device="cpu", val_every=1000, checkpoint_every=20, log_every=10,
                  show_progress=False)
    summary = train_vae(dataset, out, overrides=_overrides(40), **kwargs)
    rows = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert rows[-1]["sdf_l1"] < 0.7 * rows[0]["sdf_l1"]
    assert summary["steps"] == 40 and (out / "vae.safetensors").is_file() and (out / "loss.png").is_file()

    with pytest.raises(FileExistsError, match="--resume"):
        train_vae(dataset, out, overrides=_overrides(60), **kwargs)
    before = (out / "vae.safetensors").read_bytes()
    summary = train_vae(dataset, out, overrides=_overrides(60), resume=True, **kwargs)
    steps = [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert steps == [10, 20, 30, 40, 50, 60] and summary["steps"] == 60
    assert (out / "vae.safetensors").read_bytes() != before


def test_a_run_out_of_minutes_ends_like_a_finished_one(dataset, tmp_path, kubik):
    """--minutes: the run stops at the first check past its budget and still writes its
    held-out evaluation, model file and checkpoint, which --resume continues."""
    out, config = tmp_path / "vae", tmp_path / "micro.json"
    config.write_text(json.dumps(micro_config().to_dict()))
    common = ("3d", "train-vae", dataset, "-o", out, "--config", config, "--device", "cpu", "--batch-size", "2",
              "--set", "train_vae.query_points=256", "--val-shapes", "1", "--json")
    rc, stdout, err = kubik(*common, "--steps", "1000", "--minutes", "0.0001")
    assert rc == 0, err
    summary = json.loads(stdout)
    assert summary["steps"] == 25  # the first check of the clock, at the first log step
    assert (out / "vae.safetensors").is_file() and (out / "resume" / "state.pt").is_file()
    assert (out / "evaluation.json").is_file() or summary["val_shapes"] == 0
    rc, stdout, err = kubik(*common, "--steps", "30", "--resume")
    assert rc == 0, err
    assert json.loads(stdout)["steps"] == 30
    rc, _, err = kubik(*common, "--steps", "30", "--minutes", "0", "-o", tmp_path / "other")
    assert rc != 0 and "--minutes must be positive" in err


def test_encode_then_train_flow_gives_a_model_that_reconstructs_a_render(dataset, tmp_path, kubik):
    from kubik_core.recon3d.train.encode import read_latents
    from kubik_core.recon3d.train.flow import train_flow
    from kubik_core.recon3d.train.vae import train_vae

    train_vae(dataset, tmp_path / "vae", overrides=_overrides(30), device="cpu", val_every=1000,
              show_progress=False)
    rc, out, err = kubik("3d", "encode", dataset, "--vae", tmp_path / "vae" / "vae.safetensors",
                         "-o", tmp_path / "latents.safetensors", "--json")
    assert rc == 0, err
    assert json.loads(out)["shapes"] == 12 and json.loads(out)["views"] == 2
    tensors, meta = read_latents(tmp_path / "latents.safetensors")
    assert tensors["mean"].shape == (12, 2, 16, 3 + 4) and (tensors["std"] > 0).all() and len(meta["ids"]) == 12
    assert tensors["rotation"].shape == (12, 2, 3, 3) and (tensors["scale"] > 0).all()

    summary = train_flow(tmp_path / "latents.safetensors", tmp_path / "flow", config=micro_config(),
                         overrides=_overrides(20), device="cpu", val_every=10, val_shapes=1, val_steps=2,
                         show_progress=False)
    model_file = tmp_path / "flow" / "model.safetensors"
    assert summary["steps"] == 20 and model_file.is_file()
    val_rows = [r for r in map(json.loads, (tmp_path / "flow" / "metrics.jsonl").read_text().splitlines())
                if "val_volume_iou" in r]
    assert summary["val_shapes"] == 0 or val_rows

    render = next((dataset).glob("*/view_000.png"))
    rc, out, err = kubik("3d", "reconstruct", render, "-o", tmp_path / "mesh.ply", "--model", model_file,
                         "--steps", "2", "--resolution", "32", "--json")
    # An untrained-for-long micro model may decode to no surface at all; both outcomes are explicit.
    if rc == 0:
        result = json.loads(out)
        assert result["faces"] > 0 and (tmp_path / "mesh.ply").is_file()
    else:
        assert "no surface" in err and not (tmp_path / "mesh.ply").exists()


def test_flow_training_refuses_latents_that_miss_shapes(dataset, tmp_path):
    from safetensors.torch import save_file

    from kubik_core.recon3d.train.flow import train_flow

    bogus = tmp_path / "latents.safetensors"
    save_file({"mean": torch.zeros(1, 16, 4)}, str(bogus))
    with pytest.raises(ValueError, match="not a latents file"):
        train_flow(bogus, tmp_path / "flow", config=micro_config(), show_progress=False)


@pytest.mark.slow
def test_torchrun_two_processes_train_the_vae(dataset, tmp_path):
    """One code path: the same command under torchrun with two CPU processes (gloo)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["--set", "vae.width=32", "--set", "vae.latent_tokens=16", "--set", "vae.latent_channels=4",
            "--set", "vae.heads=2", "--set", "vae.decoder_layers=1", "--set", "vae.input_points=256",
            "--set", "train_vae.query_points=256", "--steps", "6", "--batch-size", "4", "--val-every", "1000",
            "--device", "cpu", "--json"]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "-m", "kubik_core", "3d", "train-vae", str(dataset), "-o", str(tmp_path / "ddp"), *args],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    assert summary["world_size"] == 2 and summary["steps"] == 6
    assert (tmp_path / "ddp" / "vae.safetensors").is_file()
