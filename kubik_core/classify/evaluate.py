"""Evaluation: run a model over a manifest, compute micro/macro top-k, write reports and plots."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from ..common.atomic import write_text_atomic
from ..common.distributed import DistInfo, all_gather_objects
from ..common.precision import autocast
from .classmap import ClassMap
from .metrics import Metrics, compute_metrics


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, dataset, device: torch.device, batch_size: int = 64,
                    workers: int = 0, amp: str = "fp32", channels_last: bool = False,
                    info: DistInfo = DistInfo(), k: int = 5):
    """Targets [N], top-k indices [N, k] and the summed CE loss over the (sharded) dataset.
    ``amp``: a word of :mod:`kubik_core.common.precision` (auto, fp32, bf16, fp16)."""
    from .data import collate_skipping_failures

    was_training = model.training
    model.eval()
    shard = Subset(dataset, range(info.rank, len(dataset), info.world_size))
    loader = DataLoader(shard, batch_size=batch_size, num_workers=workers,
                        collate_fn=collate_skipping_failures)
    targets, tops, indices, loss_sum = [], [], [], 0.0
    for batch in loader:
        if batch is None:
            continue
        images, target, index = batch
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            logits = model(images)
        logits = logits.float().cpu()
        loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
        tops.append(logits.topk(min(k, logits.shape[1]), dim=1).indices)
        targets.append(target)
        indices.append(index)
    model.train(was_training)
    local = (torch.cat(indices).numpy() if indices else np.zeros(0, np.int64),
             torch.cat(targets).numpy() if targets else np.zeros(0, np.int64),
             torch.cat(tops).numpy() if tops else np.zeros((0, k), np.int64), loss_sum)
    parts = all_gather_objects(local, info)
    order = np.concatenate([p[0] for p in parts]).argsort(kind="stable")
    return (np.concatenate([p[1] for p in parts])[order],
            np.concatenate([p[2] for p in parts])[order], sum(p[3] for p in parts))


@dataclass
class EvalReport:
    metrics: Metrics
    loss: float
    skipped: int


def evaluate_dataset(model, dataset, class_map: ClassMap, device, **kwargs) -> EvalReport:
    targets, topk, loss_sum = predict_dataset(model, dataset, device, **kwargs)
    metrics = compute_metrics(targets, topk, list(class_map.names))
    return EvalReport(metrics, loss_sum / max(1, len(targets)), len(dataset) - len(targets))


def write_eval_report(report: EvalReport, class_map: ClassMap, out_dir: str | Path) -> dict:
    """metrics.json (summary + most-confused pairs), per_class.csv and confusion.png."""
    from .plots import plot_confusion

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(class_map.names)
    pairs = report.metrics.most_confused(names)
    summary = {**report.metrics.summary(), "loss": report.loss, "skipped": report.skipped,
               "most_confused": pairs}
    write_text_atomic(out_dir / "metrics.json", json.dumps(summary, indent=1) + "\n")
    lines = ["class,support,top1,top5"]
    for row in report.metrics.per_class:
        fmt = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
        name = row["class"].replace('"', '""')
        lines.append(f"\"{name}\",{row['support']},{fmt(row['top1'])},{fmt(row['top5'])}")
    write_text_atomic(out_dir / "per_class.csv", "\n".join(lines) + "\n")
    plot_confusion(report.metrics.confusion, names, out_dir / "confusion.png", pairs)
    return summary
