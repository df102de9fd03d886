"""The shipped tiny image-to-3D model and the image-to-3D part of ``kubik demo``.

The model ships with the pack (``models/kubik3d/`` at the pack root), so ``kubik demo``, ``kubik 3d
reconstruct`` and the example workflow run with no download; how it was trained:
models/kubik3d/README.md (``make demo-3d-model`` reproduces it).

The demo turns the example pictures (``models/kubik3d/examples/``) into meshes. They are renders
of shapes the model never saw in training (held-out procedural shapes and pybullet_data meshes),
each beside its true mesh, so the report shows honest quality numbers next to the meshes: volume
IoU and Chamfer-L1 in the normalised frame, and the time each reconstruction took on this machine.
"""
from __future__ import annotations

from pathlib import Path

DEMO_MODEL_NAME = "kubik3d_tiny_demo.safetensors"
BUNDLED_DIR = Path(__file__).resolve().parents[2] / "models" / "kubik3d"
EXAMPLES_DIR = BUNDLED_DIR / "examples"


def demo_model_path() -> Path:
    path = BUNDLED_DIR / DEMO_MODEL_NAME
    if not path.is_file():
        raise ValueError(f"the shipped demo model {path} is missing; pass --model, or rebuild it with "
                         "`make demo-3d-model`")
    return path


def run_demo(out_dir: Path, *, resolution: int = 96) -> str:
    import trimesh

    from .mesh.io import load_mesh, normalize
    from .mesh.metrics import mesh_metrics
    from .pipeline import load_model, reconstruct

    model = load_model(demo_model_path())
    rows = []
    for image in sorted(EXAMPLES_DIR.glob("*.png")):
        truth_file = image.with_suffix(".ply")
        summary = reconstruct(image, out_dir / f"{image.stem}.glb", model=model, seed=0, resolution=resolution)
        predicted = trimesh.load(summary["output"], force="mesh")
        truth, _ = normalize(load_mesh(truth_file))
        metrics = mesh_metrics(predicted, truth, points=20_000, normalize="none")
        rows.append(f"| {image.name} | {image.stem}.glb | {summary['faces']:,} | {metrics['volume_iou']:.2f} | "
                    f"{metrics['chamfer_l1']:.3f} | {metrics['fscore@0.05']:.2f} | {summary['seconds']:.1f} s |")
    intro = (f"The shipped demo model ({model.describe()}) reconstructs each example picture "
             f"(a render of a shape it never saw in training) at {resolution}^3; the meshes are in this folder. "
             "IoU, Chamfer-L1 and F-score@0.05 compare each mesh with the true one in the normalised frame "
             "(longest side 1.9). It is a CPU-sized model: coarse shapes, not fine detail.\n\n")
    table = ("| picture | mesh | faces | volume IoU | Chamfer-L1 | F@0.05 | time |\n|---|---|---|---|---|---|---|\n"
             + "\n".join(rows))
    return intro + table + "\n"
