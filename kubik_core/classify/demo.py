"""The classifier part of ``kubik demo``: a digits classifier trained from scratch in about a minute.

Uses scikit-learn's digits (1,797 real 8x8 scans shipped inside the scikit-learn wheel), written
as PNG files so the demo runs the same path a user's photo folder takes: split -> train -> eval
-> predict, all on the CPU.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

# A ResNet-18 layout with narrow channels: ~0.7 M parameters, enough for 8x8 digits at 32 px.
DEMO_MODEL_KWARGS = {"channels": [16, 32, 64, 128], "stem_width": 16}
DEMO_AUGMENT = {"scale": (0.6, 1.0), "ratio": (0.9, 1.1), "hflip": 0.0, "color_jitter": 0.0,
                "randaugment": None}


def write_digit_images(root: Path) -> Path:
    """scikit-learn digits as PNGs in root/<digit>/<index>.png (idempotent)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (pixels, target) in enumerate(zip(digits.images, digits.target)):
        path = root / str(target) / f"{i:04d}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((pixels * 255 / 16).astype(np.uint8), "L").save(path)
    return root


def run_demo(out_dir: Path, progress: Callable[[int, int], None] | None = None, *,
             epochs: int = 12) -> str:
    """Split, train, evaluate and predict on digits under ``out_dir``; return a markdown section."""
    from .data import ManifestDataset
    from .evaluate import evaluate_dataset, write_eval_report
    from .images import load_image
    from .manifest import read_dataset
    from .predict import Classifier
    from .split import split_samples, summarize, write_split
    from .train import TrainConfig, train

    out_dir = Path(out_dir)
    images = write_digit_images(out_dir / "digits")
    split = split_samples(read_dataset(images), 0.1, 0.1, seed=0)
    split_dir = write_split(split, out_dir / "split")
    result = train(TrainConfig(data=str(split_dir), out=str(out_dir / "run"), architecture="resnet18",
                               model_kwargs=DEMO_MODEL_KWARGS, img_size=32, epochs=epochs,
                               batch_size=64, lr=3e-3, augment=DEMO_AUGMENT, device="cpu",
                               overwrite=True,  # a re-run of the demo replaces its own run
                               show_progress=False), progress=progress)
    classifier = Classifier.load(result.model_path, "cpu")
    test = split.splits["test"]
    report = evaluate_dataset(classifier.model, ManifestDataset(test, split.class_map, classifier.transform()),
                              split.class_map, classifier.device)
    summary = write_eval_report(report, split.class_map, out_dir / "eval")

    shown = test[:: max(1, len(test) // 6)][:6]
    predictions = classifier.predict([load_image(s.path) for s in shown], top_k=3)
    rows = [f"| `{Path(s.path).name}` | {s.label} | " +
            ", ".join(f"{label} ({score:.2f})" for label, score in zip(p.labels, p.scores)) + " |"
            for s, p in zip(shown, predictions)]
    (out_dir / "predictions.json").write_text(json.dumps(
        [{"image": s.path, "true": s.label, **p.to_dict()} for s, p in zip(shown, predictions)], indent=1))
    best = result.best
    return "\n".join([
        "A ResNet-18-style timm model (narrow channels, from scratch) trained on scikit-learn's "
        f"digits on the CPU for {len(result.history)} epochs.",
        "",
        f"- Split: {summarize(split.report)}.",
        f"- Best validation epoch {best['epoch']}: top-1 {best['val_top1']:.3f}, "
        f"macro top-1 {best['val_macro_top1']:.3f}.",
        f"- Held-out test set ({summary['count']} images): top-1 **{summary['top1']:.3f}**, "
        f"macro top-1 {summary['macro_top1']:.3f}, top-5 {summary['top5']:.3f}.",
        "- Files: `run/model.safetensors` + `run/model.json` (exported classifier and its model "
        "card), `run/curves.png`, `eval/confusion.png`, `eval/per_class.csv`, `predictions.json`.",
        "",
        "| image | true | top-3 predictions |",
        "|---|---|---|",
        *rows,
        "",
        f"Try it: `kubik classify predict --model {result.model_path} IMAGE.png --top-k 3`",
    ])
