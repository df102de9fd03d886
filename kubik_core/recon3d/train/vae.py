"""``kubik 3d train-vae``: train the shape VAE on preprocessed datasets.

Loss per batch (config section ``train_vae``): L1 between predicted and true signed distance,
both clipped to ``vae.sdf_clip`` (the far field only needs the right sign), with uniform points
weighted ``uniform_weight``, on-surface points ``surface_weight`` and near-surface points 1; plus ``kl_weight`` x KL;
plus, with ``sign_weight`` > 0, binary cross-entropy of inside/outside with logits
``-sdf / sign_temperature`` at the near and uniform points (L1 alone hardly penalises a wrong sign
next to the surface, where distances are tiny); plus, with ``eikonal_weight`` > 0,
(|grad SDF| - 1)^2 at the near-surface points.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...common.distributed import shutdown
from ...common.precision import autocast, check_precision
from ..data.shapes import QUERY_NEAR, QUERY_SURFACE, QUERY_UNIFORM, ShapeSet
from ..models.config import TrainVAEConfig, load_config
from ..models.shape_model import Kubik3DModel, build_model
from .evaluate import encode_shapes, latent_metrics
from .loop import RunFolder, TimeBudget, optimizer_and_schedule, start_run, take_step


class VAEObjective(nn.Module):
    """The training loss as a module, so DistributedDataParallel can wrap it."""

    def __init__(self, model: Kubik3DModel, train_config: TrainVAEConfig):
        super().__init__()
        self.vae = model.vae
        self.clip = float(model.config.vae.sdf_clip)
        self.cfg = train_config

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None):
        mean, logvar = self.vae.encode(batch["points"], batch["normals"])
        latents = self.vae.sample(mean, logvar, generator)
        decoded = self.vae.decode(latents)
        queries = batch["queries"]
        eikonal = self.cfg.eikonal_weight > 0
        if eikonal:
            queries = queries.detach().requires_grad_(True)
        pred = self.vae.query(decoded, queries).float()
        target = batch["targets"].clamp(-self.clip, self.clip)
        kind = batch["kind"]
        weight = torch.ones_like(pred)
        weight[kind == QUERY_UNIFORM] = self.cfg.uniform_weight
        weight[kind == QUERY_SURFACE] = self.cfg.surface_weight
        # Beyond the clip only the sign matters: a prediction past the clip on the right side costs nothing.
        saturated = (target.abs() >= self.clip) & (pred * target.sign() >= self.clip)
        error = torch.where(saturated, torch.zeros_like(pred), (pred - target).abs())
        sdf_loss = (weight * error).sum() / weight.sum()
        kl = self.vae.kl(mean.float(), logvar.float())
        loss = sdf_loss + self.cfg.kl_weight * kl
        parts = {"sdf_l1": sdf_loss.detach(), "kl": kl.detach()}
        if self.cfg.sign_weight > 0:
            # L1 barely notices a wrong sign 5 mm from the surface; this term does.
            off_surface = kind != QUERY_SURFACE
            logits = -pred[off_surface] / self.cfg.sign_temperature
            sign = F.binary_cross_entropy_with_logits(logits, (target[off_surface] < 0).float())
            loss = loss + self.cfg.sign_weight * sign
            parts["sign_bce"] = sign.detach()
        if eikonal:
            near = (kind == QUERY_NEAR) & (target.abs() < self.clip)
            (grad,) = torch.autograd.grad(pred.sum(), queries, create_graph=True)
            eik = ((grad.norm(dim=-1) - 1.0).square() * near).sum() / near.sum().clamp(min=1)
            loss = loss + self.cfg.eikonal_weight * eik
            parts["eikonal"] = eik.detach()
        return loss, parts


def train_vae(datasets, out, *, config="tiny", overrides: dict | None = None, device: str = "auto",
              resume: bool = False, seed: int = 0, val_every: int = 500, val_shapes: int = 8,
              val_resolution: int = 48, checkpoint_every: int = 500, log_every: int = 25,
              precision: str = "auto", gradient_checkpointing: bool = False, show_progress: bool = True,
              minutes: float | None = None,
              name: str = "vae") -> dict:
    """Train; returns the final summary (also in OUT/evaluation.json for the held-out shapes)."""
    from timm.utils import ModelEmaV3
    from tqdm import tqdm

    precision = check_precision(precision)   # a bad word fails before any work
    info, dev = start_run(device, seed)
    config = load_config(config, overrides)
    tc = config.train_vae
    run = RunFolder(out, name, info)
    resuming = run.check_fresh_or_resume(resume)
    train_set = ShapeSet.load(datasets, split="train")
    try:
        val_set = ShapeSet.load(datasets, split="val")
    except ValueError:
        val_set = None  # too few shapes for a held-out split; validation is skipped

    model = build_model(config, kind="vae", seed=seed, name=name).to(dev)
    model.vae.checkpointing = gradient_checkpointing
    ema = ModelEmaV3(model, decay=tc.ema_decay, use_warmup=True) if tc.ema_decay > 0 else None
    objective = VAEObjective(model, tc).to(dev)
    if info.enabled:
        objective = nn.parallel.DistributedDataParallel(objective)
    optimizer, scheduler = optimizer_and_schedule(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay,
                                                  warmup_steps=tc.warmup_steps, total_steps=tc.steps)
    step = run.load(model, ema.module if ema else None, optimizer, scheduler) if resuming else 0
    generator = torch.Generator().manual_seed(seed * 1000 + info.rank + step)
    per_rank = max(1, tc.batch_size // info.world_size)
    meta = {"trainer": "train-vae", "config": "custom" if config.name is None else config.name,
            "datasets": [str(d) for d in ([datasets] if isinstance(datasets, (str, Path)) else datasets)],
            "train_shapes": len(train_set), "val_shapes": len(val_set) if val_set else 0, "seed": seed,
            "world_size": info.world_size, "device": str(dev)}

    def evaluate(count: int, resolution: int) -> dict:
        from ..pipeline import ShapeLatent

        eval_model = (ema.module if ema else model).eval()
        indices = list(range(min(count, len(val_set))))
        result = latent_metrics(ShapeLatent(encode_shapes(eval_model, val_set, indices), eval_model), val_set,
                                indices, resolution=resolution)
        model.train()
        return result

    validate = (lambda: evaluate(val_shapes, val_resolution)) if val_set is not None else None
    bar = tqdm(total=tc.steps, initial=step, desc="train-vae", disable=not (show_progress and info.is_main))
    started, running = time.perf_counter(), {}
    model.train()
    total, budget = tc.steps, TimeBudget(minutes, info, dev, log_every)
    while step < total:
        shapes = torch.randint(0, len(train_set), (per_rank,), generator=generator)
        batch = {k: v.to(dev, non_blocking=True) for k, v in
                 train_set.vae_batch(shapes, config.vae.input_points, tc.query_points, generator).items()}
        with autocast(dev, precision):
            loss, parts = objective(batch)
        take_step(loss, what="VAE", step=step, model=model, params=model.parameters(), optimizer=optimizer,
                  scheduler=scheduler, ema=ema, out=run.out)
        step += 1
        bar.update(1)
        if budget.spent(step):
            total = step  # out of time: this step is the last
        for key, value in {"loss": loss.detach(), **parts}.items():
            running[key] = running.get(key, 0.0) + float(value)
        if step % log_every == 0 or step == total:
            row = {"step": step, **{k: v / log_every for k, v in running.items()},
                   "lr": scheduler.get_last_lr()[0], "seconds": round(time.perf_counter() - started, 1)}
            running = {}
            run.log(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
        run.end_step(step, total, validate=validate, val_every=val_every, checkpoint_every=checkpoint_every,
                     model=model, ema_model=ema.module if ema else None, optimizer=optimizer,
                     scheduler=scheduler, info=meta, title="VAE")
    bar.close()
    summary = {**meta, "steps": step, "model": str(run.model_path), "seconds": round(time.perf_counter() - started, 1)}
    if val_set is not None and info.is_main:
        summary = run.finish(summary, evaluate(len(val_set), max(val_resolution, 64)), model,
                             ema.module if ema else None, optimizer, scheduler, step, meta)
    shutdown(info)
    return summary
