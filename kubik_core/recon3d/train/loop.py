"""What the VAE and flow trainers share: one code path for CPU, one GPU and torchrun.

* :func:`start_run` joins the torchrun process group when there is one (gloo on CPU, NCCL on
  GPUs; see :mod:`kubik_core.common.distributed`) and picks the device;
* :class:`RunFolder` owns the run's files: ``<name>.safetensors`` (+ .json), the newest usable
  model (EMA weights when EMA is on), rewritten at every checkpoint; ``resume/`` with the raw
  weights, EMA weights and ``state.pt`` (optimizer, schedule, step, RNG: tensors and numbers only,
  read back with ``torch.load(weights_only=True)``); ``metrics.jsonl`` (one JSON row per log or
  validation step) and ``loss.png``;
* :func:`optimizer_and_schedule`: AdamW with linear warm-up then cosine decay to 10 %
  (:func:`kubik_core.common.schedules.warmup_cosine`, the classifier's schedule too);
* :class:`TimeBudget`: ``--minutes``, a run that stops on time as if its last step were reached.

Only rank 0 writes files. A run folder that already holds a run is never overwritten unless the
caller asked to resume it. Mixed precision (``--precision``) is :mod:`kubik_core.common.precision`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ...common.distributed import DistInfo, barrier, init_distributed
from ...common.schedules import warmup_cosine
from ..models.shape_model import Kubik3DModel, load_model, save_model
from ..storage import write_bytes_atomic

__all__ = ["RunFolder", "TimeBudget", "optimizer_and_schedule", "start_run", "take_step"]


def start_run(device: str, seed: int) -> tuple[DistInfo, torch.device]:
    info, torch_device = init_distributed(device)
    torch.manual_seed(seed + info.rank)
    return info, torch_device


class TimeBudget:
    """Stop a training run after ``minutes`` (None: never), checked every ``every`` steps. Rank 0's
    clock decides and every process of a torchrun job gets its answer, so all stop at one step.
    The learning-rate schedule still follows the step count, so a run stopped early ends before
    its decay does."""

    def __init__(self, minutes: float | None, info: DistInfo, device: torch.device, every: int):
        if minutes is not None and not minutes > 0:
            raise ValueError(f"--minutes must be positive, got {minutes}")
        self.deadline = None if minutes is None else time.monotonic() + 60.0 * minutes
        self.info, self.device, self.every = info, device, every

    def spent(self, step: int) -> bool:
        if self.deadline is None or step % self.every:
            return False
        flag = torch.tensor([float(time.monotonic() > self.deadline)], device=self.device)
        if self.info.enabled:
            torch.distributed.broadcast(flag, 0)
        return bool(flag.item())


def optimizer_and_schedule(params, *, lr: float, weight_decay: float, warmup_steps: int, total_steps: int):
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.99))
    schedule = warmup_cosine(total_steps, warmup_steps, min_ratio=0.1)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def take_step(loss: torch.Tensor, *, what: str, step: int, model, params, optimizer, scheduler, ema,
              out: Path) -> None:
    """Backward, clip to norm 1, optimizer and schedule step, EMA update; refuses a non-finite loss
    (nothing is written, so the last checkpoint stays the newest)."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the {what} loss became {loss.item()} at step {step}; lower the learning "
                                 f"rate (now {scheduler.get_last_lr()[0]:.3g}); the last checkpoint in {out} is intact")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    scheduler.step()
    if ema is not None:
        ema.update(model, step=step)


class RunFolder:
    def __init__(self, out: str | Path, name: str, info: DistInfo):
        self.out, self.name, self.info = Path(out), name, info
        self.resume_dir = self.out / "resume"
        self.model_path = self.out / f"{name}.safetensors"
        self.metrics_path = self.out / "metrics.jsonl"

    def has_run(self) -> bool:
        return (self.resume_dir / "state.pt").is_file()

    def check_fresh_or_resume(self, resume: bool) -> bool:
        """True when an earlier run is to be continued; refuses to overwrite one silently."""
        if self.has_run() and not resume:
            raise FileExistsError(f"{self.out} already holds a training run; pass --resume to continue it "
                                  "or choose another output folder")
        if resume and not self.has_run():
            raise FileNotFoundError(f"--resume: {self.out} holds no run to continue (no resume/state.pt)")
        return resume

    def save(self, model: Kubik3DModel, ema_model: Kubik3DModel | None, optimizer, scheduler, step: int,
             info: dict) -> None:
        """Checkpoint: raw + EMA weights, then the state (written last: its presence means the
        checkpoint is whole), then the usable model file."""
        if not self.info.is_main:
            return
        save_model(model, self.resume_dir / "model.safetensors", info)
        if ema_model is not None:
            save_model(ema_model, self.resume_dir / "ema.safetensors", info)
        state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "torch_rng": torch.get_rng_state()}
        buffer = _to_bytes(state)
        write_bytes_atomic(self.resume_dir / "state.pt", buffer)
        save_model(ema_model if ema_model is not None else model, self.model_path, info)

    def load(self, model: Kubik3DModel, ema_model: Kubik3DModel | None, optimizer, scheduler) -> int:
        """Restore a checkpoint into the given objects; returns the step to continue from."""
        model.load_state_dict(load_model(self.resume_dir / "model.safetensors").state_dict())
        if ema_model is not None and (self.resume_dir / "ema.safetensors").is_file():
            ema_model.load_state_dict(load_model(self.resume_dir / "ema.safetensors").state_dict())
        state = torch.load(self.resume_dir / "state.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        return int(state["step"])

    def end_step(self, step: int, total: int, *, validate, val_every: int, checkpoint_every: int,
                 model: Kubik3DModel, ema_model: Kubik3DModel | None, optimizer, scheduler, info: dict,
                 title: str) -> None:
        """After each training step: held-out metrics every ``val_every`` steps (``validate()`` ->
        metrics dict; None when there is no held-out split), a checkpoint and loss.png every
        ``checkpoint_every``, both at the last step; then every process waits for the others."""
        last = step == total
        if validate is not None and self.info.is_main and (step % val_every == 0 or last):
            self.log({"step": step, **{f"val_{k}": v for k, v in validate().items() if k != "per_shape"}})
        if step % checkpoint_every == 0 or last:
            self.save(model, ema_model, optimizer, scheduler, step, {**info, "steps": step})
            self.plot(("val_volume_iou", "val_chamfer_l1"), title)
        barrier(self.info)

    def finish(self, summary: dict, held_out: dict, model: Kubik3DModel, ema_model: Kubik3DModel | None,
               optimizer, scheduler, step: int, info: dict) -> dict:
        """End of a run: ``evaluation.json`` (every held-out shape) and the model file, both with
        the held-out means; returns ``summary`` with them under ``held_out``."""
        from ..storage import save_json_atomic

        summary = {**summary, "held_out": {k: v for k, v in held_out.items() if k != "per_shape"}}
        if self.info.is_main:
            save_json_atomic(self.out / "evaluation.json", {**summary, "per_shape": held_out["per_shape"]})
        self.save(model, ema_model, optimizer, scheduler, step, {**info, "steps": step, "held_out": summary["held_out"]})
        return summary

    def log(self, row: dict) -> None:
        if not self.info.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(row) + "\n")

    def history(self) -> list[dict]:
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def plot(self, curves: tuple[str, ...], title: str) -> Path | None:
        """loss.png: the training loss and the validation metrics named in ``curves``."""
        if not self.info.is_main:
            return None
        from ...common.plots import pyplot, save_figure

        rows = self.history()
        plt = pyplot()
        fig, axes = plt.subplots(1, 1 + len(curves), figsize=(4.2 * (1 + len(curves)), 3.6))
        axes = list(axes) if len(curves) else [axes]
        train = [r for r in rows if "loss" in r]
        axes[0].plot([r["step"] for r in train], [r["loss"] for r in train])
        axes[0].set(xlabel="step", ylabel="loss", title=f"{title}: training loss", yscale="log")
        for ax, key in zip(axes[1:], curves):
            points = [r for r in rows if key in r]
            ax.plot([r["step"] for r in points], [r[key] for r in points], marker="o")
            ax.set(xlabel="step", title=f"held-out {key}")
        return save_figure(fig, self.out / "loss.png")


def _to_bytes(state: dict) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()
