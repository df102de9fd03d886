"""Train an image-to-3D model from scratch on data made here: the shipped demo model by default.

    .venv/bin/python scripts/train_3d_model.py WORK_DIR [options]      # make demo-3d-model: the demo

Everything comes from this repository and pip packages: procedural shapes (`kubik 3d synth`,
seed 0) and the first meshes of pybullet_data's random_urdfs, each preprocessed into SDF samples
and renders; then `train-vae`, `encode`, `train-flow` with one config and, with --export,
`export --half`. Each step is one `kubik 3d` command, printed before it runs; a step whose output
exists is skipped and an interrupted training run resumes, so the build continues where it
stopped.

The defaults rebuild the shipped demo (models/kubik3d/kubik3d_tiny_demo.safetensors): the `tiny`
config, 640 procedural shapes + 240 pybullet meshes, eight 128-px renders each; on a 2-core CPU
about 50 minutes (OMP_NUM_THREADS=1 is faster when other jobs share the cores). For the `base`
config on one GPU in a fixed time, e.g.:

    python scripts/train_3d_model.py runs/base --config base --device cuda --resolution 224 \\
        --synth 1000 --workers 16 --vae-minutes 8 --flow-minutes 8
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO / "models" / "kubik3d" / "kubik3d_tiny_demo.safetensors"


def kubik(*args) -> None:
    command = [sys.executable, "-m", "kubik_core", "3d", *map(str, args)]
    print("+", shlex.join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def copy_pybullet_meshes(source: Path | None, count: int, target: Path) -> None:
    """NNN/NNN.obj for NNN < count, from pybullet_data's random_urdfs (or a folder laid out alike)."""
    if source is None:
        import pybullet_data

        source = Path(pybullet_data.getDataPath()) / "random_urdfs"
    for i in range(count):
        mesh = source / f"{i:03d}" / f"{i:03d}.obj"
        (target / f"{i:03d}").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mesh, target / f"{i:03d}" / mesh.name)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("work", type=Path, nargs="?", default=REPO / "build" / "demo3d", help="work folder (build/demo3d)")
    p.add_argument("--config", default="tiny", help="model config (tiny)")
    p.add_argument("--synth", type=int, default=640, help="procedural shapes (640)")
    p.add_argument("--pybullet", type=int, default=240, help="pybullet random_urdfs meshes (240)")
    p.add_argument("--pybullet-dir", type=Path, help="a folder laid out as random_urdfs (NNN/NNN.obj), "
                   "instead of pybullet_data's")
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--ring", type=int, default=4)
    p.add_argument("--resolution", type=int, default=128, help="render size in pixels (128)")
    p.add_argument("--samples", type=int, nargs=3, default=(8192, 16384, 16384), metavar=("SURFACE", "NEAR", "UNIFORM"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto", help="training device (auto)")
    p.add_argument("--data-device", default="auto", help="SDF device for the data (auto)")
    p.add_argument("--vae-steps", type=int, help="override the config's VAE steps")
    p.add_argument("--flow-steps", type=int, help="override the config's flow steps")
    p.add_argument("--vae-minutes", type=float, help="stop the VAE run after this many minutes")
    p.add_argument("--flow-minutes", type=float, help="stop the flow run after this many minutes")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations in training (less memory)")
    p.add_argument("--export", type=Path, nargs="?", const=DEMO_MODEL,
                   help=f"write the half-precision model here (no value: the demo model, {DEMO_MODEL.name})")
    args = p.parse_args(argv)

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    surface, near, uniform = args.samples
    data_args = ["--views", args.views, "--ring", args.ring, "--resolution", args.resolution, "--surface", surface,
                 "--near", near, "--uniform", uniform, "--workers", args.workers, "--device", args.data_device]
    datasets = []
    if args.synth:
        if not (work / "synth" / "dataset" / "manifest.json").is_file():
            kubik("synth", work / "synth", "--n", args.synth, "--seed", 0, *data_args)
        datasets.append(work / "synth" / "dataset")
    if args.pybullet:
        if not (work / "pybullet" / "manifest.json").is_file():
            copy_pybullet_meshes(args.pybullet_dir, args.pybullet, work / "pybullet_meshes")
            kubik("preprocess", work / "pybullet_meshes", work / "pybullet", *data_args)
        datasets.append(work / "pybullet")
    common = ["--config", args.config, "--device", args.device]
    common += ["--gradient-checkpointing"] if args.gradient_checkpointing else []
    if not (work / "vae" / "evaluation.json").is_file():
        extra = ["--resume"] if (work / "vae" / "resume" / "state.pt").is_file() else []
        extra += ["--steps", args.vae_steps] if args.vae_steps else []
        extra += ["--minutes", args.vae_minutes] if args.vae_minutes else []
        kubik("train-vae", *datasets, "-o", work / "vae", *common, "--val-every", 200, "--checkpoint-every", 100, *extra)
    if not (work / "latents.safetensors").is_file():
        kubik("encode", *datasets, "--vae", work / "vae" / "vae.safetensors", "-o", work / "latents.safetensors",
              "--device", args.device)
    if not (work / "flow" / "evaluation.json").is_file():
        extra = ["--resume"] if (work / "flow" / "resume" / "state.pt").is_file() else []
        extra += ["--steps", args.flow_steps] if args.flow_steps else []
        extra += ["--minutes", args.flow_minutes] if args.flow_minutes else []
        kubik("train-flow", work / "latents.safetensors", "-o", work / "flow", *common, "--val-every", 250,
              "--checkpoint-every", 100, *extra)
    if args.export:
        kubik("export", work / "flow" / "model.safetensors", "-o", args.export, "--half")


if __name__ == "__main__":
    main()
