"""The tiny image-to-3D model that ships with the pack (``models/kubik3d/`` at the pack root), so
``kubik demo``, ``kubik 3d reconstruct`` and the example workflow run with no download.
How it was trained: models/kubik3d/README.md (``make demo-3d-model`` reproduces it)."""
from __future__ import annotations

from pathlib import Path

DEMO_MODEL_NAME = "kubik3d_tiny_demo.safetensors"
BUNDLED_DIR = Path(__file__).resolve().parents[2] / "models" / "kubik3d"


def demo_model_path() -> Path:
    path = BUNDLED_DIR / DEMO_MODEL_NAME
    if not path.is_file():
        raise ValueError(f"the shipped demo model {path} is missing; pass --model, or rebuild it with "
                         "`make demo-3d-model`")
    return path
