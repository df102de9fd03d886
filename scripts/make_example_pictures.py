"""Write the pictures that Kubik Example Image offers (example_pictures/), from their sources.

The templates load these instead of a file from ComfyUI's input folder, so that they run on any
ComfyUI. Each picture comes from data that ships inside a Python package or inside this pack:

- digit_2.png, digit_6.png, digit_7.png: scikit-learn's handwritten digits (UCI, E. Alpaydin
  and C. Kaynak, CC BY 4.0), samples 463, 1313 and 263, all three held out from the training
  of models/classifiers/kubik_digits_demo.safetensors; each 8x8 scan is enlarged 16 times,
  pixel for pixel.
- shape_blob.png, shape_box.png: renders of two shapes held out from the training of
  models/kubik3d/kubik3d_tiny_demo.safetensors (models/kubik3d/examples/synth_00142.png and
  synth_00032.png, made by `kubik 3d synth` and this pack's renderer), transparent around the
  object.
- photo_coffee.jpg: scikit-image's "coffee" photograph (Rachel Michetti, CC0), at 450x300.
- photo_coffee_closeup.jpg: the same photograph's cup, cropped close (300x300): with
  photo_coffee.jpg, the two reference pictures of the example character (Kubik Character).

    python scripts/make_example_pictures.py
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# Not "examples/": ComfyUI serves a pack's examples/ folder at the address of its templates, ahead
# of workflows/, so the template files would answer 404.
OUT = REPO / "example_pictures"
DIGITS = {"digit_2.png": 463, "digit_6.png": 1313, "digit_7.png": 263}
SHAPES = {"shape_blob.png": "synth_00142.png", "shape_box.png": "synth_00032.png"}


def main() -> None:
    from skimage import data
    from sklearn.datasets import load_digits

    OUT.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    for name, index in DIGITS.items():
        pixels = (digits.images[index] * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels, "L").resize((128, 128), Image.NEAREST).save(OUT / name, optimize=True)
    for name, render in SHAPES.items():
        shutil.copyfile(REPO / "models" / "kubik3d" / "examples" / render, OUT / name)
    photo = Image.fromarray(data.coffee()).resize((450, 300), Image.LANCZOS)
    photo.save(OUT / "photo_coffee.jpg", quality=88, optimize=True)
    closeup = Image.fromarray(data.coffee()).crop((150, 0, 450, 300))
    closeup.save(OUT / "photo_coffee_closeup.jpg", quality=88, optimize=True)


if __name__ == "__main__":
    main()
