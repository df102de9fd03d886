"""The training loop: timm model, one code path for CPU, one GPU, and torchrun DDP.

Readable rather than clever, after timm's train.py: AMP (bf16/fp16), channels_last, optional
torch.compile, EMA, label smoothing, mixup/cutmix, RandAugment, drop path, layer-wise lr decay,
gradient accumulation, and for long tails a logit-adjusted loss and a class-balanced sampler.

A run directory holds ``checkpoint.pt`` (resumable state, loadable with weights_only=True),
``model.safetensors`` + ``model.json`` (the best model by validation macro top-1, exported),
``classes.json``, ``history.json``, ``curves.png`` and ``skipped.jsonl`` (unusable images).
The global batch is ``batch_size`` whatever the number of processes, so a 2-process torchrun
computes the same steps as one process.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

from .classmap import ClassMap, require_labels_known, write_bytes_atomic, write_text_atomic
from .data import (AugmentConfig, GlobalBatchSampler, ImageSource, ManifestDataset, build_transform,
                   class_balanced_weights, class_counts, collate_skipping_failures)
from .distributed import barrier, init_distributed, shutdown
from .evaluate import autocast, evaluate_dataset
from .fetch import FailureLog, FetchConfig
from .losses import ClassificationLoss, MixupCutmix
from .manifest import read_dataset
from .model import ModelCard, build_model, default_data_config, export_classifier

Progress = Callable[[int, int], None]


@dataclass
class TrainConfig:
    data: str                              # split folder: train.jsonl, val.jsonl, classes.json
    out: str                               # run folder
    architecture: str = "resnet18"
    model_kwargs: dict = field(default_factory=dict)
    pretrained: str | None = None          # local weights file (.safetensors/.pth); never the hub
    img_size: int | None = None            # default: the architecture's input size
    epochs: int = 30
    batch_size: int = 64                   # global batch per forward (all processes together)
    grad_accum: int = 1                    # optimizer step every grad_accum batches
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    layer_decay: float | None = None       # e.g. 0.75 for fine-tuning ViTs
    clip_grad: float | None = None
    label_smoothing: float = 0.1
    mixup: float = 0.0
    cutmix: float = 0.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    drop_path: float = 0.0
    ema_decay: float = 0.0                 # 0 = no EMA; e.g. 0.999
    loss: str = "ce"                       # "ce" or "logit_adjusted"
    tau: float = 1.0                       # logit adjustment strength
    balanced_sampler: bool = False
    smart_crop: bool = False
    amp: str = "none"                      # "none", "bf16", "fp16"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False                  # SyncBatchNorm under DDP
    device: str = "auto"
    workers: int = 0
    seed: int = 0
    patience: int = 0                      # early stopping on val macro top-1; 0 = off
    resume: bool = False
    cache_dir: str | None = None           # for URL manifests
    show_progress: bool = True

    def __post_init__(self):
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        if self.loss not in ("ce", "logit_adjusted"):
            raise ValueError(f"loss must be 'ce' or 'logit_adjusted', got {self.loss!r}")
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"amp must be 'none', 'bf16' or 'fp16', got {self.amp!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("epochs, batch_size and grad_accum must be at least 1")


@dataclass
class TrainResult:
    out_dir: Path
    model_path: Path
    history: list[dict]
    best: dict
    stopped_early: bool


def load_split(data_dir: str | Path):
    """(train samples, val samples or [], class map) from a split folder, checked for consistency."""
    data_dir = Path(data_dir)
    if not (data_dir / "classes.json").is_file():
        raise FileNotFoundError(f"{data_dir}: no classes.json; create the split with "
                                "`kubik classify split` so train and val share one class map")
    class_map = ClassMap.load(data_dir / "classes.json")
    train = read_dataset(data_dir / "train.jsonl")
    val_path = data_dir / "val.jsonl"
    val = read_dataset(val_path) if val_path.is_file() and val_path.stat().st_size else []
    require_labels_known(class_map, [s.label for s in train], "train.jsonl")
    require_labels_known(class_map, [s.label for s in val], "val.jsonl")
    return train, val, class_map


def _lr_lambda(total_steps: int, warmup_steps: int, min_ratio: float):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def _save_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "module", model)        # DDP
    return getattr(model, "_orig_mod", model)      # torch.compile


def train(config: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Train, validate every epoch, checkpoint, export the best model; see the module docstring."""
    from timm.optim import create_optimizer_v2
    from timm.utils import ModelEmaV3

    info, device = init_distributed(config.device)
    try:
        out = Path(config.out)
        train_samples, val_samples, class_map = load_split(config.data)
        num_classes = len(class_map)
        torch.manual_seed(config.seed)

        model = build_model(config.architecture, num_classes, config.model_kwargs,
                            config.pretrained, drop_path=config.drop_path)
        data_config = default_data_config(model, config.img_size or config.model_kwargs.get("img_size"))
        card = ModelCard(architecture=config.architecture, classes=list(class_map.names),
                         model_kwargs=dict(config.model_kwargs), smart_crop=config.smart_crop,
                         **data_config)

        fetch = FetchConfig(cache_dir=config.cache_dir) if config.cache_dir else None
        failures = FailureLog(out / "skipped.jsonl")
        train_set = ManifestDataset(train_samples, class_map,
                                    build_transform(data_config, True, config.augment, config.smart_crop),
                                    ImageSource(fetch), failures, seed=config.seed)
        val_set = ManifestDataset(val_samples, class_map,
                                  build_transform(data_config, False, smart_crop=config.smart_crop),
                                  ImageSource(fetch), failures) if val_samples else None
        counts = class_counts(train_set.targets, num_classes)
        weights = class_balanced_weights(train_set.targets, num_classes) if config.balanced_sampler else None
        sampler = GlobalBatchSampler(len(train_set), config.batch_size, info.rank, info.world_size,
                                     config.seed, weights)
        loader = DataLoader(train_set, batch_sampler=sampler, num_workers=config.workers,
                            collate_fn=collate_skipping_failures, pin_memory=device.type == "cuda")

        if config.sync_bn and info.enabled:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(device)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        optimizer = create_optimizer_v2(model, opt=config.optimizer, lr=config.lr,
                                        weight_decay=config.weight_decay, layer_decay=config.layer_decay)
        for group in optimizer.param_groups:  # timm's layer decay leaves the scaling to its schedulers
            group["lr"] = config.lr * group.get("lr_scale", 1.0)
        steps_per_epoch = max(1, len(sampler) // config.grad_accum)
        total_steps = steps_per_epoch * config.epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(
            total_steps, int(config.warmup_epochs * steps_per_epoch), config.min_lr_ratio))
        scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
        ema = ModelEmaV3(model, decay=config.ema_decay) if config.ema_decay > 0 else None
        criterion = ClassificationLoss(num_classes, config.label_smoothing,
                                       counts if config.loss == "logit_adjusted" else None, config.tau)
        mixer = MixupCutmix(num_classes, config.mixup, config.cutmix, seed=config.seed)

        start_epoch, step, history = 0, 0, []
        best = {"val_macro_top1": -1.0, "epoch": -1}
        bad_epochs = 0
        checkpoint_path = out / "checkpoint.pt"
        if config.resume and checkpoint_path.is_file():
            state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
            class_map.require_same(ClassMap.from_dict(state["class_map"]), "the checkpoint")
            if state["architecture"] != config.architecture:
                raise ValueError(f"checkpoint is a {state['architecture']}, not {config.architecture}")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            if ema is not None and state.get("ema") is not None:
                ema.module.load_state_dict(state["ema"])
            start_epoch, step = state["epoch"] + 1, state["step"]
            history, best, bad_epochs = state["history"], state["best"], state["bad_epochs"]

        train_model = model
        if config.compile:
            train_model = torch.compile(train_model)
        if info.enabled:
            train_model = torch.nn.parallel.DistributedDataParallel(
                train_model, device_ids=[device.index] if device.type == "cuda" else None)

        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            class_map.save(out / "classes.json")
            write_text_atomic(out / "train_config.json", json.dumps(asdict(config), indent=1) + "\n")

        bar = None
        if info.is_main and config.show_progress:
            from tqdm import tqdm
            bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True)
        stopped_early = False
        for epoch in range(start_epoch, config.epochs):
            train_model.train()
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)
            started, loss_sum, seen = time.perf_counter(), 0.0, 0
            optimizer.zero_grad(set_to_none=True)
            for micro, batch in enumerate(loader):
                if micro >= steps_per_epoch * config.grad_accum:
                    break  # leftover batches that cannot fill an accumulation group
                last_micro = (micro + 1) % config.grad_accum == 0
                if batch is None:  # every image of this slice failed: keep in step with other ranks
                    images = torch.zeros(1, *data_config["input_size"])
                    target, weight = torch.zeros(1, dtype=torch.long), 0.0
                else:
                    images, target, _ = batch
                    weight = 1.0
                images, target = images.to(device, non_blocking=True), target.to(device, non_blocking=True)
                if config.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                images, soft_target = mixer(images, target, step) if mixer.enabled else (images, target)
                sync = last_micro or not info.enabled
                context = train_model.no_sync() if not sync else contextlib.nullcontext()
                with context:
                    with autocast(device, config.amp):
                        logits = train_model(images)
                    loss = criterion(logits, soft_target) * weight
                    scaler.scale(loss / config.grad_accum).backward()
                loss_sum += float(loss.detach()) * len(target)
                seen += len(target) * (weight > 0)
                if not last_micro:
                    continue
                if config.clip_grad:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                if ema is not None:
                    ema.update(model, step=step)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{float(loss.detach()):.3f}")
                if progress is not None:
                    progress(step, total_steps)

            totals = torch.tensor([loss_sum, float(seen)], dtype=torch.float64)
            if info.enabled:
                torch.distributed.all_reduce(totals)
            record = {"epoch": epoch, "step": step, "train_loss": float(totals[0] / max(1.0, totals[1])),
                      "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - started}
            eval_model = ema.module if ema is not None else model
            if val_set is not None:
                report = evaluate_dataset(eval_model, val_set, class_map, device, batch_size=max(
                    1, config.batch_size // info.world_size), workers=config.workers, amp=config.amp,
                    channels_last=config.channels_last, info=info)
                m = report.metrics
                record.update(val_loss=report.loss, val_top1=m.top1, val_top5=m.top5,
                              val_macro_top1=m.macro_top1, val_macro_top5=m.macro_top5)
            history.append(record)

            improved = val_set is None or record["val_macro_top1"] > best["val_macro_top1"]
            if improved:
                best = {**record, "val_macro_top1": record.get("val_macro_top1", -1.0)}
                bad_epochs = 0
            else:
                bad_epochs += 1
            if info.is_main:
                if improved:
                    export_classifier(_unwrap(eval_model).state_dict(), card, out / "model.safetensors")
                _save_checkpoint(checkpoint_path, {
                    "model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                    "ema": ema.module.state_dict() if ema is not None else None,
                    "epoch": epoch, "step": step, "history": history, "best": best,
                    "bad_epochs": bad_epochs, "class_map": class_map.to_dict(),
                    "architecture": config.architecture, "card": card.to_json()})
                write_text_atomic(out / "history.json", json.dumps(history, indent=1) + "\n")
                from .plots import plot_curves
                plot_curves(history, out / "curves.png")
            if config.patience and bad_epochs >= config.patience:
                stopped_early = True
                break
        if bar is not None:
            bar.close()
        barrier(info)
        return TrainResult(out, out / "model.safetensors", history, best, stopped_early)
    finally:
        shutdown(info)

