"""Every `kubik 3d` sub-command with hostile arguments: one clear line on stderr, exit status 2,
checked before any work starts, and nothing written.

Findings of issue 15: `--device cuda` without a GPU and an output that cannot be written ended as
one failure per mesh (exit 1) or a traceback; `--steps 0` silently meant the model's default;
negative seeds, NaN noise widths, thresholds and truncations, an output path under a file, a huge
`--max-parts` (memory exhausted) all ended in tracebacks, hangs or silent acceptance.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import trimesh


DEMO = "models/kubik3d/kubik3d_tiny_demo.safetensors"


@pytest.fixture
def place(tmp_path):
    """A folder with a mesh, points, an image, and a plain file standing where a folder would go."""
    trimesh.creation.box().export(tmp_path / "box.obj")
    np.save(tmp_path / "points.npy", np.zeros((4, 3)))
    np.savez(tmp_path / "archive.npz", a=np.zeros((4, 3)))
    np.save(tmp_path / "far.npy", np.array([[1e300, 0.0, 0.0]]))
    (tmp_path / "image.png").write_bytes(b"not looked at")
    (tmp_path / "file").write_text("a file, not a folder")
    for name, side in (("bomb.png", 100_000), ("large.png", 15_000)):   # headers only: decompression bombs
        (tmp_path / name).write_bytes(png_header(side))
    return tmp_path


def png_header(side: int) -> bytes:
    """A PNG that declares side x side pixels and holds none."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def cases(p):
    """(arguments, the exact error after 'kubik 3d: error: ') for a folder ``p`` from ``place``."""
    small = ["--views", "0", "--surface", "100", "--near", "100", "--uniform", "100"]
    sdf = ["sdf", p / "box.obj", "--points", p / "points.npy"]
    recon = ["reconstruct", p / "image.png", "--model", DEMO]
    seed_range = "from 0 to 18,446,744,073,709,551,615"
    return [
        (["preprocess", p / "box.obj", p / "file", *small], f"out {p / 'file'}: is a file, not a folder; choose a folder"),
        (["preprocess", p / "box.obj", p / "file" / "out", *small],
         f"out {p / 'file' / 'out'}: {p / 'file'} is a file, so no folder can be made there"),
        (["preprocess", p / "box.obj", p / "out", *small, "--device", "cuda:99"], None),
        (["preprocess", p / "box.obj", p / "out", *small, "--device", "gpu"],
         "--device: unknown device 'gpu'; use 'cpu', 'cuda' or 'cuda:N'"),
        (["preprocess", p / "box.obj", p / "out", *small, "--sigmas", "nan"],
         "--sigmas must be positive (a finite number), got nan"),
        (["preprocess", p / "box.obj", p / "out", *small, "--sigmas", "0.01", "inf"],
         "--sigmas must be positive (a finite number), got inf"),
        (["preprocess", p / "box.obj", p / "out", *small, "--truncation", "-1"],
         "--truncation must be zero or positive (a finite number), got -1.0"),
        (["preprocess", p / "box.obj", p / "out", *small, "--truncation", "nan"],
         "--truncation must be zero or positive (a finite number), got nan"),
        (["preprocess", p / "box.obj", p / "out", *small, "--seed-samples", "-5"],
         f"--seed-samples must be {seed_range}, got -5"),
        (["preprocess", p / "box.obj", p / "out", "--views", "0", "--surface", "100000000000"],
         "--surface must be from 1 to 16,777,216, got 100,000,000,000"),
        (["preprocess", p / "box.obj", p / "out", *small, "--workers", "100000"],
         "--workers must be from 1 to 256, got 100,000"),
        (["preprocess", p / "box.obj", p / "out", "--views", "2", "--resolution", "100000"],
         "--resolution must be from 1 to 4,096, got 100,000"),
        (["preprocess", p / "box.obj", p / "out", "--views", "100000"], "--views must be from 0 to 256, got 100,000"),
        (["synth", p / "s", "--n", "1", "--max-parts", "100000", "--meshes-only"],
         "--max-parts must be from 1 to 32, got 100,000"),
        (["synth", p / "s", "--n", "1", "--seed", "-1", "--meshes-only"], f"--seed must be {seed_range}, got -1"),
        (["synth", p / "file", "--n", "1", "--meshes-only"],
         f"out {p / 'file' / 'meshes'}: {p / 'file'} is a file, so no folder can be made there"),
        (["synth", p / "s", "--n", "1", *small, "--sigmas", "-0.1"], "--sigmas must be positive (a finite number), "
                                                                     "got -0.1"),
        (["eval", p / "box.obj", p / "box.obj", "--thresholds", "nan"],
         "--thresholds must be positive (a finite number), got nan"),
        (["eval", p / "box.obj", p / "box.obj", "--seed", "-1"], f"--seed must be {seed_range}, got -1"),
        (["eval", p / "box.obj", p / "box.obj", "--points", "100000000000"],
         "--points must be from 1 to 16,777,216, got 100,000,000,000"),
        ([*sdf, "-o", p], f"-o {p}: is a folder; give a file name in it"),
        ([*sdf, "-o", p / "file" / "d.npy"], f"-o {p / 'file'}: {p / 'file'} is a file, so no folder can be made there"),
        ([*sdf, "-o", p / "d.npy", "--device", "gpu"], "--device: unknown device 'gpu'; use 'cpu', 'cuda' or 'cuda:N'"),
        (["sdf", p / "box.obj", "--points", p / "archive.npz", "-o", p / "d.npy"],
         f"--points {p / 'archive.npz'}: expected one .npy array, got an .npz archive"),
        (["sdf", p / "box.obj", "--points", p / "far.npy", "-o", p / "d.npy"],   # was cut short to 5e5, exit 0
         "query points lie up to 2e+300 times the mesh's half extent from its centre; distances are exact within "
         "1e+05 of it: move the points closer or rescale the mesh"),
        ([*recon, "-o", p / "m.glb", "--steps", "0"], "--steps must be from 1 to 1,000, got 0"),
        ([*recon, "-o", p / "m.glb", "--steps", "-3"], "--steps must be from 1 to 1,000, got -3"),
        ([*recon, "-o", p / "m.glb", "--cfg", "nan"], "--cfg must be zero or positive (a finite number), got nan"),
        ([*recon, "-o", p / "m.glb", "--resolution", "0"], "--resolution must be from 2 to 2,048, got 0"),
        ([*recon, "-o", p / "m.glb", "--seed", str(2 ** 80)], f"--seed must be {seed_range}, got {2 ** 80:,}"),
        ([*recon, "-o", p / "m.xyz"], f"-o {p / 'm.xyz'}: give the mesh file a suffix: .glb, .obj, .ply"),
        ([*recon, "-o", p / "file" / "m.glb"], f"-o {p / 'file'}: {p / 'file'} is a file, so no folder can be made there"),
        ([*recon, "-o", p / "m.glb", "--device", "cuda:99"], None),
        ([*recon, "-o", p / "m.glb", "--device", "tpu"], "--device 'tpu': unknown device; use cpu, cuda, cuda:N or auto"),
        (["reconstruct", p / "bomb.png", "--model", DEMO, "-o", p / "m.glb", "--device", "cpu"],
         f"image {p / 'bomb.png'} is too large to read (Image size (10000000000 pixels) exceeds limit of 178956970 "
         "pixels, could be decompression bomb DOS attack.)"),
        (["reconstruct", p / "large.png", "--model", DEMO, "-o", p / "m.glb", "--device", "cpu"],   # was a warning
         f"image {p / 'large.png'} is too large to read (Image size (225000000 pixels) exceeds limit of 178956970 "
         "pixels, could be decompression bomb DOS attack.)"),
        (["export", DEMO, "-o", p / "x.bin"], f"-o {p / 'x.bin'}: the output must end in .safetensors"),
        (["export", DEMO, "-o", p / "file" / "x.safetensors"],
         f"-o {p / 'file'}: {p / 'file'} is a file, so no folder can be made there"),
        (["encode", p, "--vae", DEMO, "-o", p / "file" / "l.safetensors"],
         f"-o {p / 'file'}: {p / 'file'} is a file, so no folder can be made there"),
        (["encode", p, "--vae", DEMO, "-o", p / "l.safetensors", "--device", "cuda:99"], None),
        (["train-vae", p, "-o", p / "run", "--steps", "0"], "--steps must be from 1 to 1,000,000,000, got 0"),
        (["train-vae", p, "-o", p / "run", "--batch-size", "0"], "--batch-size must be from 1 to 65,536, got 0"),
        (["train-vae", p, "-o", p / "run", "--lr", "nan"], "--lr must be positive (a finite number), got nan"),
        (["train-vae", p, "-o", p / "run", "--val-every", "0"], "--val-every must be at least 1, got 0"),
        (["train-vae", p, "-o", p / "run", "--minutes", "-1"], "--minutes must be positive (a finite number), got -1.0"),
        (["train-vae", p, "-o", p / "file"], f"-o {p / 'file'}: is a file, not a folder; choose a folder"),
        (["train-vae", p, "-o", p / "run", "--device", "cuda:99"], None),
        (["train-flow", p / "l.safetensors", "-o", p / "run", "--seed", "-1"], f"--seed must be {seed_range}, got -1"),
        (["train-flow", p / "l.safetensors", "-o", p / "run", "--image-encoder-weights", p / "points.npy"],
         f"--image-encoder-weights {p / 'points.npy'}: give an existing .safetensors file (timm or Hugging Face "
         "model.safetensors of the config's backbone)"),
    ]


def test_every_3d_command_refuses_hostile_arguments_up_front(kubik, place):
    before = sorted(p.name for p in place.iterdir())
    for argv, message in cases(place):
        rc, err = kubik("3d", *argv)
        assert rc == 2, (argv, err)
        assert "\n" not in err and "Traceback" not in err, err
        if message is None:   # a GPU that no machine has: the wording depends on whether there are any
            assert err.startswith("kubik 3d: error: --device") and "cuda:99" in err and "use" in err, err
        else:
            assert err == f"kubik 3d: error: {message}", argv
    assert sorted(p.name for p in place.iterdir()) == before   # nothing was written anywhere


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in read-only folders")
def test_an_output_folder_without_write_permission_is_refused_up_front(kubik, place):
    locked = place / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        rc, err = kubik("3d", "preprocess", place / "box.obj", locked / "out", "--views", "0")
        assert (rc, err) == (2, f"kubik 3d: error: out {locked / 'out'}: cannot write in {locked} (permission "
                                "denied or a read-only file system); choose another place")
    finally:
        locked.chmod(0o755)


def test_cuda_without_a_gpu_is_one_clear_line(kubik, place):
    import torch

    from kubik_core.recon3d.sdf.cuda import cuda_device_count

    if torch.cuda.is_available() or cuda_device_count() > 0:
        pytest.skip("this machine has a GPU")
    rc, err = kubik("3d", "preprocess", place / "box.obj", place / "out", "--views", "0", "--device", "cuda")
    assert rc == 2 and err.startswith("kubik 3d: error: --device: device 'cuda:0' was asked for, but the CUDA engine "
                                      "cannot run it (")
    rc, err = kubik("3d", "reconstruct", place / "image.png", "-o", place / "m.glb", "--device", "cuda")
    assert (rc, err) == (2, "kubik 3d: error: --device cuda: no CUDA GPU is available here; use --device cpu (or auto)")
    assert not (place / "out").exists()


def test_steps_zero_is_refused_by_the_sampler_too():
    """`steps=0` used to fall back to the model's default (``steps or default``)."""
    import torch

    from kubik_core.recon3d.pipeline import build_model, image_to_latent

    model = build_model("tiny")
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        image_to_latent(model, torch.rand(1, 3, 96, 96), steps=0)
