"""Accuracy the way long-tailed data needs it: micro (per image) and macro (per class) top-k.

Micro accuracy is dominated by the head classes; macro accuracy (the mean of per-class recall,
over the classes that have evaluation images) is what early stopping and reports use.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Metrics:
    top1: float
    top5: float
    macro_top1: float
    macro_top5: float
    count: int
    per_class: list[dict]                 # {class, support, top1, top5}
    confusion: np.ndarray                 # [C, C] counts: row = true class, column = top-1 prediction

    def summary(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "macro_top1": self.macro_top1,
                "macro_top5": self.macro_top5, "count": self.count}

    def most_confused(self, class_names: list[str], limit: int = 20) -> list[dict]:
        off = self.confusion.copy()
        np.fill_diagonal(off, 0)
        flat = np.argsort(off, axis=None)[::-1][:limit]
        pairs = []
        for true, pred in zip(*np.unravel_index(flat, off.shape)):
            if off[true, pred] == 0:
                break
            pairs.append({"true": class_names[true], "predicted": class_names[pred],
                          "count": int(off[true, pred]),
                          "share_of_true": float(off[true, pred] / max(1, self.confusion[true].sum()))})
        return pairs


def compute_metrics(targets: np.ndarray, topk: np.ndarray, class_names: list[str]) -> Metrics:
    """``targets`` [N] class indices, ``topk`` [N, k] predicted indices, best first."""
    targets = np.asarray(targets, dtype=np.int64)
    topk = np.asarray(topk, dtype=np.int64)
    if targets.size == 0:
        raise ValueError("no images to evaluate (all failed to load, or the manifest is empty)")
    num_classes = len(class_names)
    hit1 = topk[:, 0] == targets
    hit5 = (topk[:, :5] == targets[:, None]).any(axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (targets, topk[:, 0]), 1)
    support = np.bincount(targets, minlength=num_classes)
    c1 = np.bincount(targets, weights=hit1, minlength=num_classes)
    c5 = np.bincount(targets, weights=hit5, minlength=num_classes)
    present = support > 0
    per_class = [{"class": class_names[c], "support": int(support[c]),
                  "top1": float(c1[c] / support[c]) if support[c] else None,
                  "top5": float(c5[c] / support[c]) if support[c] else None}
                 for c in range(num_classes)]
    return Metrics(top1=float(hit1.mean()), top5=float(hit5.mean()),
                   macro_top1=float((c1[present] / support[present]).mean()),
                   macro_top5=float((c5[present] / support[present]).mean()),
                   count=int(targets.size), per_class=per_class, confusion=confusion)
