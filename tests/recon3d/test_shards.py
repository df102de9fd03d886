"""`kubik 3d preprocess --shards`: WebDataset-style tar shards that training reads exactly as it
reads the dataset folder (same shapes, same batches, same trained weights for the same seed)."""
from __future__ import annotations

import json
import tarfile

import pytest
import torch

from kubik_core.recon3d.data.preprocess import PreprocessConfig, preprocess_folder
from kubik_core.recon3d.data.render import MeshRenderer, RenderBackendError, RenderConfig
from kubik_core.recon3d.data.samples import SampleConfig
from kubik_core.recon3d.data.shapes import ShapeSet

from .models.test_model import MICRO

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Six procedural shapes (renders when a GL backend exists), in a folder and in shards of 4."""
    from kubik_core.recon3d.data.synth import write_synthetic_meshes

    render = RenderConfig(views=2, ring=1, resolution=32)
    try:
        MeshRenderer(render).close()
    except RenderBackendError:
        render = None
    root = tmp_path_factory.mktemp("shards")
    write_synthetic_meshes(root / "meshes", 6, seed=3)
    config = PreprocessConfig(samples=SampleConfig(surface=512, near=512, uniform=512), render=render, device="cpu")
    report = preprocess_folder(root / "meshes", root / "dataset", config, shards=root / "shards", shard_size=4)
    assert report["done"] == 6
    return root, config, report


def test_shards_hold_one_sample_per_mesh_under_webdataset_names(made):
    root, config, report = made
    assert report["shards"] == {"folder": str(root / "shards"), "shards": 2, "samples": 6, "written": 2}
    index = json.loads((root / "shards" / "shards.json").read_text())
    assert index["dataset"] == "dataset" and [s["count"] for s in index["shards"]] == [4, 2]
    with tarfile.open(root / "shards" / "shard-000000.tar") as tar:
        names = tar.getnames()
        first = json.loads(tar.extractfile(names[0]).read())
        assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())
    keys = sorted({n.split(".", 1)[0] for n in names})
    ids = [m["id"] for m in json.loads((root / "dataset" / "manifest.json").read_text())["meshes"]]
    assert keys == ids[:4] and first["samples"]["file"] == "samples.npz"
    expected = {"meta.json", "samples.npz"} | ({"views.npz", "view_000.png", "view_001.png"} if config.render else set())
    assert {n.split(".", 1)[1] for n in names if n.startswith(keys[0] + ".")} == expected
    with tarfile.open(root / "shards" / "shard-000000.tar") as tar:
        assert tar.extractfile(f"{keys[0]}.samples.npz").read() == (root / "dataset" / keys[0] / "samples.npz").read_bytes()


def test_training_reads_shards_as_it_reads_the_folder(made, tmp_path):
    from kubik_core.recon3d.train.flow import load_view_pixels
    from kubik_core.recon3d.train.vae import train_vae

    root, config, _ = made
    folder, shards = ShapeSet.load(root / "dataset", split="all"), ShapeSet.load(root / "shards", split="all")
    assert folder.ids == shards.ids and len(folder) == 6 and folder.cameras == shards.cameras
    assert all(torch.equal(folder.arrays[k], shards.arrays[k]) for k in folder.arrays)
    a = folder.vae_batch(torch.tensor([0, 5, 2]), 64, 128, torch.Generator().manual_seed(1))
    b = shards.vae_batch(torch.tensor([0, 5, 2]), 64, 128, torch.Generator().manual_seed(1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    if config.render is not None:
        assert torch.equal(load_view_pixels(folder, 32), load_view_pixels(shards, 32))

    overrides = {**MICRO, "train_vae": {"steps": 4, "batch_size": 2, "query_points": 128, "warmup_steps": 1}}
    kwargs = dict(config="tiny", overrides=overrides, device="cpu", seed=7, val_every=1000, val_shapes=1,
                  val_resolution=16, checkpoint_every=1000, log_every=1, show_progress=False)
    train_vae(root / "dataset", tmp_path / "from_folder", **kwargs)
    train_vae(root / "shards", tmp_path / "from_shards", **kwargs)
    from safetensors.torch import load_file

    one, two = load_file(tmp_path / "from_folder" / "vae.safetensors"), load_file(tmp_path / "from_shards" / "vae.safetensors")
    assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)
    losses = [[r["loss"] for r in map(json.loads, (tmp_path / f / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
              for f in ("from_folder", "from_shards")]
    assert losses[0] == losses[1] and len(losses[0]) == 4


def test_a_later_run_rewrites_only_shards_whose_meshes_changed(made, tmp_path):
    import shutil

    root, config, _ = made
    src, out, shards = tmp_path / "meshes", tmp_path / "dataset", tmp_path / "shards"
    shutil.copytree(root / "meshes", src)
    shutil.copytree(root / "dataset", out)
    shutil.copytree(root / "shards", shards)
    report = preprocess_folder(src, out, config, shards=shards, shard_size=4)
    assert report["skipped"] == 6 and report["shards"]["written"] == 0
    assert (shards / "shard-000001.tar").read_bytes() == (root / "shards" / "shard-000001.tar").read_bytes()

    first = sorted(src.iterdir())[0]
    first.unlink()
    shutil.rmtree(out / first.stem)
    report = preprocess_folder(src, out, config, shards=shards, shard_size=4)
    assert report["shards"] == {"folder": str(shards), "shards": 2, "samples": 5, "written": 2}
    shutil.rmtree(out / sorted(src.iterdir())[0].stem)
    sorted(src.iterdir())[0].unlink()
    report = preprocess_folder(src, out, config, shards=shards, shard_size=4)
    assert report["shards"]["shards"] == 1 and sorted(p.name for p in shards.iterdir()) == ["shard-000000.tar", "shards.json"]
    assert len(ShapeSet.load(shards, split="all")) == 4
