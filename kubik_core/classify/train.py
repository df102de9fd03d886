"""The training loop: timm model, one code path for CPU, one GPU, and torchrun DDP.

Readable rather than clever, after timm's train.py: mixed precision (bf16/fp16), channels_last, optional
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
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

from ..common.atomic import write_bytes_atomic, write_text_atomic
from ..common.distributed import barrier, init_distributed, shutdown
from ..common.paths import is_write_probe, writable_folder
from ..common.precision import autocast, check_precision, needs_grad_scaler
from ..common.schedules import warmup_cosine
from .classmap import ClassMap, require_labels_known
from .data import (AugmentConfig, GlobalBatchSampler, ImageSource, ManifestDataset, build_transform,
                   class_balanced_weights, class_counts, collate_skipping_failures)
from .evaluate import evaluate_dataset
from .fetch import FailureLog, FetchConfig
from .losses import ClassificationLoss, MixupCutmix
from .manifest import read_dataset
from .model import ModelCard, build_model, default_data_config, export_classifier
from .schema import MAX_INPUT_SIDE, check_architecture, check_model_kwargs

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
    amp: str = "fp32"                      # --precision: auto, fp32 (or none), bf16, fp16
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False                  # SyncBatchNorm under DDP
    device: str = "auto"
    workers: int = 0
    seed: int = 0
    patience: int = 0                      # early stopping on val macro top-1; 0 = off
    resume: bool = False
    overwrite: bool = False                # replace the files of an earlier run in ``out``
    cache_dir: str | None = None           # for URL manifests
    fetch_rate: float = 5.0                # URL requests per second, all workers together
    fetch_retries: int = 4
    fetch_timeout: float = 20.0
    show_progress: bool = True

    def __post_init__(self):
        """Every setting checked here, named by its command-line flag, before any work starts."""
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        if self.loss not in ("ce", "logit_adjusted"):
            raise ValueError(f"--loss must be 'ce' or 'logit_adjusted', got {self.loss!r}")
        self.amp = check_precision(self.amp)
        for flag, value, lo, hi in (("--epochs", self.epochs, 1, 100_000),
                                    ("--batch-size", self.batch_size, 1, 65_536),
                                    ("--grad-accum", self.grad_accum, 1, 1024),
                                    ("--workers", self.workers, 0, 256),
                                    ("--seed", self.seed, 0, 2 ** 31 - 1),
                                    ("--patience", self.patience, 0, 100_000)):
            _check_int(flag, value, lo, hi)
        if self.img_size is not None:
            _check_int("--img-size", self.img_size, 8, MAX_INPUT_SIDE)
        for flag, value, lo, hi in (("--lr", self.lr, 1e-12, 100.0),
                                    ("--weight-decay", self.weight_decay, 0.0, 100.0),
                                    ("--warmup-epochs", self.warmup_epochs, 0.0, 100_000.0),
                                    ("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0),
                                    ("--smoothing", self.label_smoothing, 0.0, 0.99),
                                    ("--mixup", self.mixup, 0.0, 100.0),
                                    ("--cutmix", self.cutmix, 0.0, 100.0),
                                    ("--drop-path", self.drop_path, 0.0, 0.99),
                                    ("--ema", self.ema_decay, 0.0, 0.999999),
                                    ("--tau", self.tau, 0.0, 100.0)):
            _check_number(flag, value, lo, hi)
        if self.layer_decay is not None:
            _check_number("--layer-decay", self.layer_decay, 0.01, 1.0)
        if self.clip_grad is not None:
            _check_number("--clip-grad", self.clip_grad, 1e-6, 1e6)
        if self.optimizer not in _optimizer_names():
            raise ValueError(f"--opt {self.optimizer!r} is not a timm optimizer (e.g. adamw, sgd, "
                             "lamb, lion)")
        check_architecture(self.architecture)
        self.model_kwargs = check_model_kwargs(self.model_kwargs, "--model-kwargs")
        if self.resume and self.overwrite:
            raise ValueError("--resume continues the run in --out, --overwrite replaces it: "
                             "give one of them")
        if self.cache_dir is not None:
            self.fetch_config()  # checks --rate, --retries, --timeout like `kubik classify fetch`

    def fetch_config(self) -> FetchConfig | None:
        if self.cache_dir is None:
            return None
        return FetchConfig(cache_dir=self.cache_dir, requests_per_second=self.fetch_rate,
                           max_retries=self.fetch_retries, timeout=self.fetch_timeout)


def _check_int(flag: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{flag} must be an integer from {lo} to {hi}, got {value!r}")


def _check_number(flag: str, value, lo: float, hi: float) -> None:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not lo <= value <= hi):
        raise ValueError(f"{flag} must be a number from {lo:g} to {hi:g}, got {value!r}")


def _optimizer_names() -> set[str]:
    from timm.optim import list_optimizers

    return set(list_optimizers())


@dataclass
class TrainResult:
    out_dir: Path
    model_path: Path
    history: list[dict]
    best: dict
    stopped_early: bool
    # classes the model saw no image of: none in train.jsonl, or none of them loadable
    classes_without_train: list[str] = field(default_factory=list)


# What a run writes into its folder; --overwrite removes these (and nothing else) first.
RUN_FILES = ("checkpoint.pt", "model.safetensors", "model.json", "classes.json", "history.json",
             "curves.png", "train_config.json", "skipped.jsonl")


def _left_by_a_failed_start(name: str) -> bool:
    """A run refused before training (no loadable image) leaves its skipped.jsonl, which names
    the bad files; it must not make the folder count as an earlier run. Other processes' write
    probes come and go too."""
    return name == "skipped.jsonl" or is_write_probe(name)


def check_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """Check ``out`` up front: a folder we can write, holding no earlier run unless asked."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file, not a folder; name a folder for the run")
    if resume:
        if not (out / "checkpoint.pt").is_file():
            raise ValueError(f"--resume: {out} has no checkpoint.pt to continue from; "
                             "leave out --resume to start a new run")
    elif not overwrite and any(not _left_by_a_failed_start(entry.name)
                               for entry in (out.iterdir() if out.is_dir() else ())):
        earlier = any((out / name).exists() for name in RUN_FILES)
        raise ValueError(f"--out {out}: holds {'an earlier run' if earlier else 'other files'}; "
                         "add --resume to continue it, --overwrite to replace it, or choose "
                         "another folder")
    writable_folder(out, "--out")


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


def _save_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "module", model)        # DDP
    return getattr(model, "_orig_mod", model)      # torch.compile


def _require_cache_for_urls(samples, name: str, cache_dir: str | None) -> None:
    urls = sum(1 for s in samples if s.is_url)
    if urls and cache_dir is None:
        raise ValueError(f"{name} lists {urls} image URL(s): give --cache-dir, a folder for the "
                         "downloaded images (`kubik classify fetch --cache-dir` fills it ahead)")


def _require_loadable(dataset: ManifestDataset, name: str, log: FailureLog) -> None:
    """Fail before training when no image of ``name`` loads (the reasons are in ``log``)."""
    if dataset.first_loadable() is None:
        reasons = [row["reason"] for row in log.read()]
        example = f" (e.g. {reasons[0]})" if reasons else ""
        raise ValueError(f"{name}: none of its {len(dataset)} images could be loaded{example}; "
                         f"fix the files (see {log.path}) or split again")


def _load_checkpoint(path: Path) -> dict:
    """checkpoint.pt of an earlier run (weights_only), or a clear error for a damaged file."""
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles; the error says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, not a checkpoint, unsafe pickle content
        raise ValueError(f"--resume: {path} is not a readable checkpoint ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}); start again with --overwrite") from None
    keys = ("model", "optimizer", "scheduler", "scaler", "epoch", "step", "history", "best",
            "bad_epochs", "class_map", "architecture")
    if not isinstance(state, dict) or any(key not in state for key in keys):
        raise ValueError(f"--resume: {path} is not a `kubik classify train` checkpoint")
    return state


def _classes_without_training_images(samples, class_map: ClassMap, log: FailureLog) -> list[str]:
    """Classes with no train sample, or none whose image loaded (per the run's skipped log)."""
    unusable = {row["source"] for row in log.read()}
    loaded = {s.label for s in samples if s.path not in unusable}
    return [name for name in class_map.names if name not in loaded]


def train(config: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Train, validate every epoch, checkpoint, export the best model; see the module docstring."""
    from timm.optim import create_optimizer_v2
    from timm.utils import ModelEmaV3

    info, device = init_distributed(config.device)
    out = Path(config.out)
    created = not out.exists()
    try:
        check_run_folder(out, config.resume, config.overwrite)
        barrier(info)  # every process looked at --out before the main one writes there
        if info.is_main and not config.resume:  # a new run starts with a new log
            for name in RUN_FILES if config.overwrite else ("skipped.jsonl",):
                (out / name).unlink(missing_ok=True)
        barrier(info)
        train_samples, val_samples, class_map = load_split(config.data)
        _require_cache_for_urls(train_samples, "train.jsonl", config.cache_dir)
        _require_cache_for_urls(val_samples, "val.jsonl", config.cache_dir)
        num_classes = len(class_map)
        torch.manual_seed(config.seed)

        model = build_model(config.architecture, num_classes, config.model_kwargs,
                            config.pretrained, drop_path=config.drop_path)
        data_config = default_data_config(model, config.img_size or config.model_kwargs.get("img_size"))
        card = ModelCard(architecture=config.architecture, classes=list(class_map.names),
                         model_kwargs=dict(config.model_kwargs), smart_crop=config.smart_crop,
                         **data_config)
        card.check("the model card of this run")

        fetch = config.fetch_config()
        failures = FailureLog(out / "skipped.jsonl")
        train_set = ManifestDataset(train_samples, class_map,
                                    build_transform(data_config, True, config.augment, config.smart_crop),
                                    ImageSource(fetch, info.world_size), failures, seed=config.seed,
                                    refill=True)
        val_set = ManifestDataset(val_samples, class_map,
                                  build_transform(data_config, False, smart_crop=config.smart_crop),
                                  ImageSource(fetch, info.world_size), failures) if val_samples else None
        _require_loadable(train_set, "train.jsonl", failures)
        if val_set is not None:
            _require_loadable(val_set, "val.jsonl", failures)
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
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(
            total_steps, int(config.warmup_epochs * steps_per_epoch), config.min_lr_ratio))
        scaler = torch.amp.GradScaler(device.type, enabled=needs_grad_scaler(device, config.amp))
        ema = ModelEmaV3(model, decay=config.ema_decay) if config.ema_decay > 0 else None
        criterion = ClassificationLoss(num_classes, config.label_smoothing,
                                       counts if config.loss == "logit_adjusted" else None, config.tau)
        mixer = MixupCutmix(num_classes, config.mixup, config.cutmix, seed=config.seed)

        start_epoch, step, history = 0, 0, []
        best = {"val_macro_top1": -1.0, "epoch": -1}
        bad_epochs = 0
        checkpoint_path = out / "checkpoint.pt"
        if config.resume:
            state = _load_checkpoint(checkpoint_path)
            class_map.require_same(ClassMap.from_dict(state["class_map"]), "the checkpoint")
            if state["architecture"] != config.architecture:
                raise ValueError(f"checkpoint is a {state['architecture']}, not {config.architecture}")
            try:
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                scaler.load_state_dict(state["scaler"])
                if ema is not None and state.get("ema") is not None:
                    ema.module.load_state_dict(state["ema"])
            except (RuntimeError, ValueError, KeyError) as exc:
                raise ValueError(f"--resume: the checkpoint does not fit these settings (other "
                                 f"--model-kwargs, --opt or --ema?): {' '.join(str(exc).split())[:200]}"
                                 ) from None
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
                if batch is None or len(batch[1]) < sampler.local_batch:
                    # The dataset refills failed images with stand-ins, so this means no image
                    # loads any more (a cache emptied, a disk gone) rather than a few bad files.
                    raise ValueError(f"the training images stopped loading during epoch {epoch}: "
                                     f"a batch and every stand-in failed (see {failures.path})")
                images, target, _ = batch
                images, target = images.to(device, non_blocking=True), target.to(device, non_blocking=True)
                if config.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                images, soft_target = mixer(images, target, step) if mixer.enabled else (images, target)
                sync = last_micro or not info.enabled
                context = train_model.no_sync() if not sync else contextlib.nullcontext()
                with context:
                    with autocast(device, config.amp):
                        logits = train_model(images)
                    loss = criterion(logits, soft_target)
                    scaler.scale(loss / config.grad_accum).backward()
                loss_sum += float(loss.detach()) * len(target)
                seen += len(target)
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
        return TrainResult(out, out / "model.safetensors", history, best, stopped_early,
                           _classes_without_training_images(train_samples, class_map, failures))
    except BaseException:
        if created and info.is_main:  # a run that failed before writing leaves no empty folder
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    finally:
        shutdown(info)

