"""Rebuild the shipped image-to-3D demo model (models/kubik3d/kubik3d_tiny_demo.safetensors).

    .venv/bin/python scripts/train_demo_3d_model.py [WORK_DIR]     # or: make demo-3d-model

Everything comes from this repository and pip packages: 640 procedural shapes (`kubik 3d synth`,
seed 0) and the first 240 of pybullet_data's random_urdfs meshes, each preprocessed into SDF
samples and eight 128-px renders; then `train-vae`, `encode`, `train-flow` with the `tiny`
config, and `export --half`. Each step is one `kubik 3d` command, printed before it runs; a step
whose output exists is skipped, so an interrupted build continues. On a 2-core CPU the whole
build takes about 50 minutes (OMP_NUM_THREADS=1 is faster when other jobs share the cores).
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA_ARGS = ["--views", "8", "--ring", "4", "--resolution", "128", "--surface", "8192", "--near", "16384",
             "--uniform", "16384", "--workers", "2"]
SYNTH_SHAPES, PYBULLET_MESHES = 640, 240


def kubik(*args) -> None:
    command = [sys.executable, "-m", "kubik_core", "3d", *map(str, args)]
    print("+", shlex.join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def copy_pybullet_meshes(target: Path) -> None:
    """pybullet_data's random_urdfs/NNN/NNN.obj for NNN < PYBULLET_MESHES (the .obj files only)."""
    import pybullet_data

    source = Path(pybullet_data.getDataPath()) / "random_urdfs"
    for i in range(PYBULLET_MESHES):
        mesh = source / f"{i:03d}" / f"{i:03d}.obj"
        (target / f"{i:03d}").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mesh, target / f"{i:03d}" / mesh.name)


def main(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "synth" / "dataset" / "manifest.json").is_file():
        kubik("synth", work / "synth", "--n", SYNTH_SHAPES, "--seed", 0, *DATA_ARGS)
    if not (work / "pybullet" / "manifest.json").is_file():
        copy_pybullet_meshes(work / "pybullet_meshes")
        kubik("preprocess", work / "pybullet_meshes", work / "pybullet", *DATA_ARGS)
    datasets = [work / "synth" / "dataset", work / "pybullet"]
    if not (work / "vae" / "evaluation.json").is_file():
        resume = ["--resume"] if (work / "vae" / "resume" / "state.pt").is_file() else []
        kubik("train-vae", *datasets, "-o", work / "vae", "--config", "tiny", "--val-every", 200,
              "--checkpoint-every", 100, *resume)
    if not (work / "latents.safetensors").is_file():
        kubik("encode", *datasets, "--vae", work / "vae" / "vae.safetensors", "-o", work / "latents.safetensors")
    if not (work / "flow" / "evaluation.json").is_file():
        resume = ["--resume"] if (work / "flow" / "resume" / "state.pt").is_file() else []
        kubik("train-flow", work / "latents.safetensors", "-o", work / "flow", "--config", "tiny",
              "--val-every", 250, "--checkpoint-every", 100, *resume)
    kubik("export", work / "flow" / "model.safetensors", "-o",
          REPO / "models" / "kubik3d" / "kubik3d_tiny_demo.safetensors", "--half")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "build" / "demo3d")
