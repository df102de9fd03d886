"""The classifier's PNG plots: training curves and the confusion matrix (or its worst pairs)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..common.plots import pyplot, save_figure

FULL_MATRIX_MAX_CLASSES = 40


def plot_curves(history: list[dict], path: str | Path) -> Path:
    """Train/val loss and val accuracy (micro and macro top-1) per epoch."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    if any("val_loss" in h for h in history):
        ax_loss.plot(epochs, [h.get("val_loss", np.nan) for h in history], label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    for key, label in (("val_top1", "val top-1"), ("val_macro_top1", "val macro top-1")):
        ax_acc.plot(epochs, [h.get(key, np.nan) for h in history], label=label)
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="validation accuracy", ylim=(0, 1.02))
    ax_acc.legend()
    return save_figure(fig, Path(path))


def plot_confusion(confusion: np.ndarray, class_names: list[str], path: str | Path,
                   pairs: list[dict] | None = None) -> Path:
    """Row-normalised confusion matrix, or for many classes a bar chart of the most-confused pairs."""
    plt = pyplot()
    if len(class_names) <= FULL_MATRIX_MAX_CLASSES:
        rows = confusion.sum(axis=1, keepdims=True).clip(min=1)
        fig, ax = plt.subplots(figsize=(2 + 0.35 * len(class_names), 1.5 + 0.35 * len(class_names)))
        im = ax.imshow(confusion / rows, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
        ax.set(xlabel="predicted", ylabel="true", title="confusion (row-normalised)")
        fig.colorbar(im, ax=ax, fraction=0.046)
    else:
        pairs = pairs or []
        fig, ax = plt.subplots(figsize=(8, 1 + 0.3 * max(1, len(pairs))))
        labels = [f"{p['true']} -> {p['predicted']}" for p in pairs]
        ax.barh(range(len(pairs)), [p["count"] for p in pairs])
        ax.set_yticks(range(len(pairs)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set(xlabel="images", title=f"most confused pairs ({len(class_names)} classes)")
    return save_figure(fig, Path(path))
