"""``kubik 3d train-flow``: train the image encoder + flow transformer on encoded latents.

Inputs: a latents file from ``kubik 3d encode`` (it names the datasets, whose renders are the
images, and the VAE, which is frozen and bundled into the output). Each step: a random render of
each shape in the batch, framed by :func:`..image_input.prepare_images` exactly as at inference;
a latent drawn from the VAE posterior of the shape as that render shows it (facing the camera,
:func:`..data.shapes.view_frame`), standardised per channel; the rectified-flow loss
(:func:`flow_matching_loss`) with condition dropout. EMA weights are what the output file holds.

The loss lives here, with its trainer, not beside the network in :mod:`..models.flow`: the time
distribution (logit-normal) and the condition dropout are choices of how the flow is taught, like
its learning rate, and a model file does not depend on them. What the network's output means
(``x_t``, the velocity ``data - noise``, the null condition) is stated once in
:mod:`..models.flow`, and both this loss and the sampler (:mod:`..sampler`) follow it.

Output: ``OUT/model.safetensors`` (kind ``image-to-shape``: VAE + image encoder + flow + latent
statistics), loadable by ``kubik 3d reconstruct`` and the "Kubik Load 3D Model" node.
"""
from __future__ import annotations

import time
from dataclasses import replace

import torch
from torch import nn

from ...common.distributed import shutdown
from ...common.precision import autocast, check_precision
from ..data.shapes import ShapeSet, is_held_out
from ..models.config import load_config
from ..models.flow import FlowTransformer
from ..models.shape_model import Kubik3DModel, load_model
from ..pipeline import ShapeLatent, image_to_latent
from .encode import read_latents
from .evaluate import latent_metrics
from .loop import RunFolder, TimeBudget, optimizer_and_schedule, start_run, take_step


def logit_normal_times(batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Training times ``sigmoid(n), n ~ N(0, 1)``: most steps in the middle of the path, where the
    velocity is hardest to predict."""
    return torch.sigmoid(torch.randn(batch, generator=generator, device=device))


def flow_matching_loss(model: FlowTransformer, data: torch.Tensor, context: torch.Tensor,
                       condition_dropout: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Velocity-prediction MSE at logit-normal times; with probability ``condition_dropout`` a
    sample's image is swapped for the null condition, so the sampler can guide (CFG)."""
    b = data.shape[0]
    noise = torch.randn(data.shape, generator=generator, device=data.device, dtype=data.dtype)
    t = logit_normal_times(b, generator, data.device).to(data.dtype)
    x_t = (1 - t)[:, None, None] * noise + t[:, None, None] * data
    drop = torch.rand(b, generator=generator, device=data.device) < condition_dropout
    velocity = model(x_t, t, context, drop)
    return (velocity.float() - (data - noise).float()).square().mean()


class FlowObjective(nn.Module):
    """Image encoder + flow loss as one module (what DistributedDataParallel wraps)."""

    def __init__(self, model: Kubik3DModel, condition_dropout: float):
        super().__init__()
        self.image_encoder, self.flow = model.image_encoder, model.flow
        self.condition_dropout = condition_dropout

    def forward(self, pixels: torch.Tensor, latents: torch.Tensor, generator=None) -> torch.Tensor:
        return flow_matching_loss(self.flow, latents, self.image_encoder(pixels), self.condition_dropout, generator)


def load_view_pixels(shape_set: ShapeSet, size: int, views_per_shape: int | None = None) -> torch.Tensor:
    """Every shape's RGBA renders cut out and framed as at inference (:func:`..image_input.prepare_images`,
    alpha as the mask) -> uint8 [S, V, 3, size, size]. Shapes must have the same number of views."""
    import numpy as np
    from PIL import Image

    from ..data.shards import open_view
    from ..image_input import prepare_images

    counts = {len(v) for v in shape_set.views}
    if 0 in counts:
        raise ValueError("some shapes have no renders; preprocess with --views > 0 to train the flow model")
    views = min(counts) if views_per_shape is None else min(min(counts), views_per_shape)
    out = torch.empty(len(shape_set), views, 3, size, size, dtype=torch.uint8)
    for i, paths in enumerate(shape_set.views):
        rgba = np.stack([np.asarray(Image.open(open_view(p)).convert("RGBA")) for p in paths[:views]])
        pixels = prepare_images(rgba, size=size).pixels
        out[i] = (pixels * 255.0 + 0.5).clamp(0, 255).to(torch.uint8)
    return out


def train_flow(latents, out, *, image_encoder_weights=None, config="tiny", overrides: dict | None = None,
               device: str = "auto", resume: bool = False, seed: int = 0, val_every: int = 500,
               val_shapes: int = 8, val_resolution: int = 48, val_steps: int = 12,
               checkpoint_every: int = 500, log_every: int = 25, precision: str = "auto",
               gradient_checkpointing: bool = False, show_progress: bool = True, name: str = "model",
               minutes: float | None = None) -> dict:
    from timm.utils import ModelEmaV3
    from tqdm import tqdm

    config = load_config(config, overrides)
    if config.image_encoder.pretrained_file:
        raise ValueError("config image_encoder.pretrained_file: a config names no files; pass the weights "
                         "with --image-encoder-weights PATH")
    precision = check_precision(precision)   # a bad word fails before any work
    info, dev = start_run(device, seed)
    tensors, meta_in = read_latents(latents)
    vae = load_model(meta_in["vae"])
    config = replace(config, vae=vae.config.vae)  # the flow works in this VAE's latent space
    tc = config.train_flow
    run = RunFolder(out, name, info)
    resuming = run.check_fresh_or_resume(resume)

    shapes = ShapeSet.load(meta_in["datasets"], split="all")
    row_of = {shape_id: i for i, shape_id in enumerate(meta_in["ids"])}
    missing = [s for s in shapes.ids if s not in row_of]
    if missing:
        raise ValueError(f"{len(missing)} shapes of the datasets are not in {latents} (first: {missing[0]}); "
                         "run `kubik 3d encode` again")
    order = torch.tensor([row_of[s] for s in shapes.ids])
    mean, std = tensors["mean"][order], tensors["std"][order]          # [S, V, tokens, channels]
    rotation, scale = tensors["rotation"][order], tensors["scale"][order]
    held = torch.tensor([is_held_out(s, 5.0) for s in shapes.ids])
    train_rows, val_rows = (~held).nonzero().flatten(), held.nonzero().flatten()
    if len(train_rows) == 0:
        raise ValueError("no training shapes: every shape fell in the held-out split")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Kubik3DModel(config, "image-to-shape", name)
    if image_encoder_weights:
        model.image_encoder.load_pretrained(image_encoder_weights)
    model.vae.load_state_dict(vae.vae.state_dict())
    model.vae.requires_grad_(False)
    model.latent_mean.copy_(mean[train_rows].mean(dim=(0, 1, 2)))
    model.latent_std.copy_(mean[train_rows].std(dim=(0, 1, 2)).clamp(min=1e-4))
    model.to(dev)
    model.flow.checkpointing = gradient_checkpointing
    pixels = load_view_pixels(shapes, model.image_size, views_per_shape=mean.shape[1])  # uint8 [S, V, 3, H, W]
    ema = ModelEmaV3(model, decay=tc.ema_decay, use_warmup=True) if tc.ema_decay > 0 else None
    objective = FlowObjective(model, tc.condition_dropout).to(dev)
    if info.enabled:
        objective = nn.parallel.DistributedDataParallel(objective)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = optimizer_and_schedule(trainable, lr=tc.lr, weight_decay=tc.weight_decay,
                                                  warmup_steps=tc.warmup_steps, total_steps=tc.steps)
    step = run.load(model, ema.module if ema else None, optimizer, scheduler) if resuming else 0
    generator = torch.Generator().manual_seed(seed * 1000 + info.rank + step)
    per_rank = max(1, tc.batch_size // info.world_size)
    meta = {"trainer": "train-flow", "config": "custom" if config.name is None else config.name, "datasets": meta_in["datasets"],
            "vae": meta_in["vae"], "image_encoder_weights": str(image_encoder_weights) if image_encoder_weights else None,
            "train_shapes": len(train_rows), "val_shapes": len(val_rows), "seed": seed,
            "world_size": info.world_size, "device": str(dev)}

    def evaluate(count: int, resolution: int) -> dict:
        eval_model = (ema.module if ema else model).eval()
        rows = val_rows[:count]
        images = pixels[rows, 0].float().div(255.0)  # view 0: the first ring view
        latent = image_to_latent(eval_model, images.to(dev), seed=seed, steps=val_steps)
        frames = [(rotation[r, 0], float(scale[r, 0])) for r in rows]
        result = latent_metrics(ShapeLatent(latent.latents, eval_model), shapes, rows.tolist(), frames=frames,
                                resolution=resolution)
        model.train()
        return result

    validate = (lambda: evaluate(val_shapes, val_resolution)) if len(val_rows) else None
    bar = tqdm(total=tc.steps, initial=step, desc="train-flow", disable=not (show_progress and info.is_main))
    started, running = time.perf_counter(), 0.0
    model.train()
    model.vae.eval()
    total, budget = tc.steps, TimeBudget(minutes, info, dev, log_every)
    while step < total:
        pick = train_rows[torch.randint(0, len(train_rows), (per_rank,), generator=generator)]
        view = torch.randint(0, pixels.shape[1], (per_rank,), generator=generator)
        images = pixels[pick, view].float().div(255.0).to(dev, non_blocking=True)
        noise = torch.randn(mean[pick, view].shape, generator=generator)
        target = model.normalize_latents((mean[pick, view] + std[pick, view] * noise).to(dev))
        with autocast(dev, precision):
            loss = objective(images, target)
        take_step(loss, what="flow", step=step, model=model, params=trainable, optimizer=optimizer,
                  scheduler=scheduler, ema=ema, out=run.out)
        step += 1
        bar.update(1)
        if budget.spent(step):
            total = step  # out of time: this step is the last
        running += float(loss.detach())
        if step % log_every == 0 or step == total:
            run.log({"step": step, "loss": running / log_every, "lr": scheduler.get_last_lr()[0],
                     "seconds": round(time.perf_counter() - started, 1)})
            bar.set_postfix(loss=f"{running / log_every:.4f}")
            running = 0.0
        run.end_step(step, total, validate=validate, val_every=val_every, checkpoint_every=checkpoint_every,
                     model=model, ema_model=ema.module if ema else None, optimizer=optimizer,
                     scheduler=scheduler, info=meta, title="flow")
    bar.close()
    summary = {**meta, "steps": step, "model": str(run.model_path), "seconds": round(time.perf_counter() - started, 1)}
    if len(val_rows) and info.is_main:
        summary = run.finish(summary, evaluate(len(val_rows), max(val_resolution, 64)), model,
                             ema.module if ema else None, optimizer, scheduler, step, meta)
    shutdown(info)
    return summary
