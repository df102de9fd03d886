"""Image -> mesh end to end (``kubik 3d reconstruct``'s path), hierarchical vs dense decode in one run.

For each example picture shipped in models/kubik3d/examples/ (renders of held-out shapes), the
model samples a shape latent (default steps and CFG of its config) and the mesh is extracted at
``--resolution``, once with the hierarchical decode and once densely (every grid point queried:
the baseline). One line per picture and a summary line: seconds for sampling, for each decode and
in total, SDF queries, peak RSS growth of the process, and the ratio dense / hierarchical.

    python benchmarks/image_to_mesh.py [--model FILE] [--resolution 128|256] [--device cpu|cuda]

Without --model it uses the shipped tiny demo model (the issue's "image -> mesh seconds on the CPU
with tiny"); on a GPU machine pass a `base` model file and --resolution 256.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    from PIL import Image

    from kubik_core.recon3d.demo import EXAMPLES_DIR, demo_model_path
    from kubik_core.recon3d.image_input import prepare_images
    from kubik_core.recon3d.mesh.extract import extract_mesh
    from kubik_core.recon3d.pipeline import image_to_latent, load_model, sdf_function

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model file (default: the shipped tiny demo model)")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    model = load_model(args.model or demo_model_path(), device, kind="image-to-shape")
    images = sorted(EXAMPLES_DIR.glob("*.png"))
    print(f"model {model.describe()}, device {device}, threads {torch.get_num_threads()}, "
          f"resolution {args.resolution}, {len(images)} pictures")
    totals = {"sample": 0.0, "hier": 0.0, "dense": 0.0, "hier_q": 0, "dense_q": 0}
    for path in images:
        pixels = prepare_images(np.asarray(Image.open(path).convert("RGBA")), size=model.image_size).pixels
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        latent = image_to_latent(model, pixels, seed=0)
        sampled = time.perf_counter() - start
        sdf = sdf_function(latent)
        timings = {}
        for name, hierarchical in (("hier", True), ("dense", False)):
            start = time.perf_counter()
            mesh = extract_mesh(sdf, args.resolution, hierarchical=hierarchical, device=device)
            timings[name] = (time.perf_counter() - start, mesh.queries, len(mesh.faces))
        totals["sample"] += sampled
        for name in ("hier", "dense"):
            totals[name] += timings[name][0]
            totals[f"{name}_q"] += timings[name][1]
        print(f"{path.name}: sample {sampled:.2f} s | hierarchical decode {timings['hier'][0]:.2f} s, "
              f"{timings['hier'][1]:,} queries, {timings['hier'][2]:,} faces | dense (baseline) "
              f"{timings['dense'][0]:.2f} s, {timings['dense'][1]:,} queries | image->mesh "
              f"{sampled + timings['hier'][0]:.2f} s vs {sampled + timings['dense'][0]:.2f} s")
    n = max(1, len(images))
    hier_total = (totals["sample"] + totals["hier"]) / n
    dense_total = (totals["sample"] + totals["dense"]) / n
    print(f"mean image->mesh at {args.resolution}^3 on {device}: {hier_total:.2f} s hierarchical vs "
          f"{dense_total:.2f} s dense (baseline): {dense_total / hier_total:.2f}x faster; queries "
          f"{totals['dense_q'] / max(1, totals['hier_q']):.1f}x fewer; peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
