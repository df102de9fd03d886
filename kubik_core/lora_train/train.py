"""The LoRA training loop for SD1.5 and SDXL checkpoints (kohya sd-scripts' settings, kept readable).

One loop for both families: what differs (text encoders, conditioning, the UNet's extra inputs,
names in the file) is asked of the base model object (base_model.py). Pictures are encoded by the
VAE once (in fp32: the fp16 SDXL VAE overflows) and their latents
cached, in memory or on disk under a key made of the picture's SHA-256, its bucket and the base
model's SHA-256, so a second run on the same pictures skips the VAE. Text-encoder outputs are
cached the same way by caption text while the text encoders are not trained. The UNet (and with
``train_text_encoder`` the text encoders) get peft LoRA layers; each step noises the latents at a
random timestep and regresses the noise (or v), optionally with min-SNR weighting and an offset
noise. Every random draw is seeded by (seed, micro-batch number), so a resumed run continues
exactly as an uninterrupted one would.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..common.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from ..common.paths import cache_dir
from ..common.precision import autocast, autocast_dtype, check_precision
from ..common.schedules import warmup_constant, warmup_cosine
from . import dataset, network, samples

SCHEDULES = ("cosine", "constant")
OPTIMIZERS = ("auto", "adamw", "adamw8bit", "adafactor")


@dataclass
class TrainSettings:
    """Everything a run depends on (written into the LoRA's metadata and the resume file)."""

    data: str
    base: str
    output: str
    name: str
    trigger: str = ""
    caption_model: str | None = None       # local BLIP folder captioning pictures that have no .txt
    write_captions: bool = False           # save the captions made as <stem>.txt beside the pictures
    resolution: int = 0                    # bucket side; 0: the family's (SD1.5 512, SDXL 1024)
    max_upscale: float = 1.0
    repeats: int = 1
    batch_size: int = 1
    steps: int = 500
    lr: float = 1e-4
    text_encoder_lr: float = 5e-5
    rank: int = 16
    alpha: float = 16.0
    conv_rank: int = 0                     # LoRA on the UNet's convolutions too (LoCon; 0: off)
    conv_alpha: float = 1.0
    ema_decay: float = 0.0                 # write an EMA of the LoRA weights (e.g. 0.999; 0: off)
    unet_targets: tuple = network.UNET_TARGETS
    train_text_encoder: bool = False
    schedule: str = "cosine"
    warmup: int = 0
    grad_accum: int = 1
    precision: str = "auto"
    gradient_checkpointing: bool = True
    noise_offset: float = 0.0
    min_snr_gamma: float = 5.0
    caption_dropout: float = 0.0
    shuffle_tags: bool = False
    keep_tokens: int = 1
    seed: int = 0
    cache: str = "memory"                 # "memory" or "disk"
    cache_dir: str | None = None           # disk cache folder (default <kubik cache>/lora_train)
    save_every: int = 0                    # resume checkpoint every N optimizer steps (0: at the end only)
    device: str = "auto"
    tokenizer: str | None = None
    optimizer: str = "auto"               # OPTIMIZERS: "auto" (8-bit AdamW where bitsandbytes runs), ...
    optimizer_name: str = ""               # what "auto" chose (recorded in the metadata)
    prediction_type: str = "epsilon"
    progress: bool = True
    key_style: str = "kohya"               # UNet key names: "kohya" (original layout) or "diffusers"
    sample_every: int = 0                  # sample pictures every N steps and at the end (0: never)
    sample_prompts: tuple = ()             # default: the trigger, else the first caption
    sample_steps: int = 20                 # Euler steps per sample picture
    sample_cfg: float = 5.0                # classifier-free guidance scale of the samples

    def check(self) -> None:
        """ValueError naming the first setting that cannot work."""
        checks = [
            (self.steps >= 1, "--steps must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.repeats >= 1, "--repeats must be at least 1"),
            (self.resolution >= 0, "--resolution must be a multiple of 64, or 0 for the base model's own"),
            (self.grad_accum >= 1, "--grad-accum must be at least 1"),
            (1 <= self.rank <= 1024, "--rank must be from 1 to 1024"),
            (self.alpha > 0 and self.conv_alpha > 0, "--alpha and --conv-alpha must be positive"),
            (0 <= self.conv_rank <= 1024, "--conv-rank must be from 0 (off) to 1024"),
            (0.0 <= self.ema_decay < 1.0, "--ema-decay must be from 0 (off) to below 1"),
            (self.lr > 0 and self.text_encoder_lr >= 0, "--lr must be positive and --text-encoder-lr not negative"),
            (0.0 <= self.caption_dropout < 1.0, "--caption-dropout must be from 0 to below 1"),
            (self.max_upscale >= 1.0, "--max-upscale must be at least 1 (1 = never enlarge)"),
            (self.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}"),
            (self.warmup >= 0 and self.save_every >= 0, "--warmup and --save-every must not be negative"),
            (self.noise_offset >= 0 and self.min_snr_gamma >= 0, "--noise-offset and --min-snr-gamma must not be negative"),
            (self.cache in ("memory", "disk"), "--cache must be memory or disk"),
            (self.sample_every >= 0 and 1 <= self.sample_steps <= 200 and 0 <= self.sample_cfg <= 30,
             "--sample-every must not be negative, --sample-steps from 1 to 200, --sample-cfg from 0 to 30"),
            (self.key_style in network.KEY_STYLES, f"--key-style must be one of {', '.join(network.KEY_STYLES)}"),
            (self.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (bool(self.name) and "/" not in self.name and "\\" not in self.name and not self.name.startswith("."),
             "--name must be a plain file name (no folders)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.precision = check_precision(self.precision)

    def fingerprint(self) -> str:
        """What a resume must agree on (the data and network shape, not the step count)."""
        keep = {k: v for k, v in asdict(self).items()
                if k not in ("steps", "output", "save_every", "progress", "device", "cache", "cache_dir",
                             "optimizer_name", "tokenizer", "key_style", "sample_every", "sample_prompts",
                             "sample_steps", "sample_cfg", "caption_model", "write_captions")}
        return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()


class TrainingStopped(Exception):
    """train() was asked to stop (``should_stop``): every finished step is in the resume file,
    and the same command continues from there."""

    def __init__(self, step: int):
        super().__init__(f"stopped at step {step}")
        self.step = step


class LoraEMA:
    """An exponential moving average of the LoRA weights, which the LoRA file then holds (a
    smoother result than the last step's). As timm's model EMA warms up, the decay used at update
    n is min(decay, (1 + n) / (10 + n)), so the first steps are not drowned by the zero start."""

    def __init__(self, parameters: list, decay: float):
        self.parameters, self.decay = parameters, decay
        self.values = [p.detach().clone() for p in parameters]
        self.updates = 0

    def update(self) -> None:
        import torch

        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        with torch.no_grad():
            for value, parameter in zip(self.values, self.parameters):
                value.lerp_(parameter.detach(), 1.0 - decay)

    def state(self) -> dict:
        return {"values": [v.detach().cpu() for v in self.values], "updates": self.updates}

    def load(self, state: dict) -> None:
        self.values = [v.to(p.device, p.dtype) for v, p in zip(state["values"], self.parameters)]
        self.updates = int(state["updates"])

    def copy_to_parameters(self) -> None:
        import torch

        with torch.no_grad():
            for parameter, value in zip(self.parameters, self.values):
                parameter.copy_(value)


@dataclass
class TrainResult:
    lora: Path
    sidecar: Path
    loss_plot: Path
    steps: int
    losses: list = field(default_factory=list)
    fixed_batch_loss: tuple = (0.0, 0.0)   # (before training, after): same pictures, noise, timesteps


class Cache:
    """Tensors by key, in memory and optionally in a folder of small safetensors files."""

    def __init__(self, folder: Path | None):
        self.memory: dict[str, dict] = {}
        self.folder = folder
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def get(self, key: str):
        if key in self.memory:
            return self.memory[key]
        if self.folder is not None and (self.folder / f"{key}.safetensors").is_file():
            from safetensors.torch import load_file

            try:
                self.memory[key] = load_file(str(self.folder / f"{key}.safetensors"))
                return self.memory[key]
            except Exception:  # a damaged cache file is recomputed, never trusted
                return None
        return None

    def put(self, key: str, tensors: dict) -> dict:
        self.memory[key] = tensors
        if self.folder is not None:
            from safetensors.torch import save

            write_bytes_atomic(self.folder / f"{key}.safetensors",
                               save({k: v.contiguous().cpu() for k, v in tensors.items()}))
        return tensors


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _optimizer(settings: TrainSettings, groups: list, device):
    """The optimizer ``settings.optimizer`` names, its name recorded in ``optimizer_name``."""
    import torch

    if settings.optimizer == "adafactor":
        # Factored second moments: about half of AdamW's optimizer memory on any device. With
        # the learning rates and schedule given here (kohya's SDXL settings), not its own.
        from transformers.optimization import Adafactor

        settings.optimizer_name = "Adafactor"
        return Adafactor(groups, scale_parameter=False, relative_step=False, warmup_init=False,
                         weight_decay=1e-2)
    if settings.optimizer in ("auto", "adamw8bit") and device.type == "cuda":
        try:
            import bitsandbytes as bnb  # optional: 8-bit states halve the optimizer's memory

            settings.optimizer_name = "AdamW8bit"
            return bnb.optim.AdamW8bit(groups, weight_decay=1e-2)
        except ImportError:
            if settings.optimizer == "adamw8bit":
                raise ValueError("--optimizer adamw8bit needs bitsandbytes (pip install bitsandbytes)") from None
    elif settings.optimizer == "adamw8bit":
        raise ValueError("--optimizer adamw8bit runs on CUDA GPUs only; use adamw on this device")
    settings.optimizer_name = "AdamW"
    return torch.optim.AdamW(groups, weight_decay=1e-2)


def train(settings: TrainSettings, log=print, report=None, should_stop=None) -> TrainResult:
    """Run (or resume) one training; returns where the LoRA went and the loss history.

    ``report(event)`` (process 0 only) receives progress as small dicts: {"event": "stage",
    "stage": "loading" | "caching" | "training" | "saving"}, {"event": "progress", "step",
    "total", "loss"} after each optimizer step. ``should_stop()`` is asked between pictures and
    steps; when it answers True the finished steps are saved to the resume file and
    :class:`TrainingStopped` is raised (under torchrun every process stops at the same step).
    """
    import torch
    from tqdm import tqdm

    from ..common.distributed import barrier, init_distributed, shutdown
    from .base_model import detect_family, load_base_model
    from .captioner import captions_from_model

    settings.check()
    # The base model's family comes from its header (a wrong file stops here). The pictures are
    # checked before it, unless their buckets wait for the family's resolution.
    family = None
    if not settings.resolution:
        family = detect_family(settings.base)
        settings.resolution = family.default_resolution
    started = time.time()
    # Under torchrun every process trains on its share of each step's micro-batches and the LoRA
    # gradients are averaged across processes before the optimizer step; process 0 writes files.
    info, device = init_distributed(settings.device)
    main = info.is_main
    log = log if main else (lambda *_: None)
    report = report if (report is not None and main) else (lambda _event: None)

    def stop_requested() -> bool:
        wanted = bool(should_stop()) if should_stop is not None else False
        if info.enabled:   # one process's request stops them all, at the same step
            flag = torch.tensor([1.0 if wanted else 0.0], device=device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            wanted = bool(flag.item())
        return wanted

    def stopped(step: int) -> TrainingStopped:
        barrier(info)          # process 0 may still be writing the resume file
        shutdown(info)
        return TrainingStopped(step)

    report({"event": "stage", "stage": "loading"})
    output = Path(settings.output)
    output.mkdir(parents=True, exist_ok=True)
    # The captioning model, if any, is loaded once here and freed before the base model loads;
    # every process captions alike (greedy decoding), process 0 alone writes the .txt files.
    caption_missing = captions_from_model(settings.caption_model, device, log) if settings.caption_model else None
    items = dataset.load_items(settings.data, settings.trigger, settings.resolution, settings.max_upscale,
                               caption_missing, settings.write_captions and main)
    log(f"{len(items)} pictures in {len({i.bucket for i in items})} bucket(s), {settings.repeats} repeat(s)")
    family = family or detect_family(settings.base)
    base_path = Path(settings.base)
    base_sha = _sha256(base_path)
    model = load_base_model(base_path, family, settings.tokenizer)
    if stop_requested():
        raise stopped(0)
    settings.prediction_type = model.prediction_type
    for part in model.modules():
        part.requires_grad_(False)
        part.to(device)
    # The disk cache stays out of the output folder, which is often ComfyUI's loras folder: its
    # .safetensors files would be listed as LoRAs.
    cache = Cache(Path(settings.cache_dir or cache_dir() / "lora_train") if settings.cache == "disk" else None)

    # 1. Latents, once per picture (VAE in fp32 whatever the training precision).
    latents = []
    report({"event": "stage", "stage": "caching", "total": len(items)})
    with torch.no_grad():
        for item in tqdm(items, desc="caching latents", disable=not (settings.progress and main)):
            if stop_requested():
                raise stopped(0)
            key = hashlib.sha256(f"{_sha256(item.path)}:{item.bucket}:{base_sha}:latent".encode()).hexdigest()
            cached = cache.get(key)
            if cached is None:
                pixels, cond = dataset.load_pixels(item)
                latent = model.encode_latents(pixels[None].to(device))[0]
                cached = cache.put(key, {"latent": latent.float().cpu(), "cond": torch.tensor(cond, dtype=torch.float32)})
            latents.append(cached)
    model.vae.to("cpu")  # no longer needed on the device

    # 2. LoRA layers (their A matrices start random: seeded, so reruns and every torchrun
    # process start from the same weights) and the optimizer.
    torch.manual_seed(settings.seed)
    network.add_lora(model.unet, settings.rank, settings.alpha, tuple(settings.unet_targets),
                     settings.conv_rank, settings.conv_alpha)
    parts = {"lora_unet": model.unet}
    groups = [{"params": list(network.lora_parameters(model.unet).values()), "lr": settings.lr}]
    if settings.train_text_encoder:
        for prefix, encoder in model.text_encoders.items():
            network.add_lora(encoder, settings.rank, settings.alpha, network.TEXT_TARGETS)
            parts[prefix] = encoder
            groups.append({"params": list(network.lora_parameters(encoder).values()), "lr": settings.text_encoder_lr})
    for part in parts.values():
        part.to(device).train()
        if settings.gradient_checkpointing:
            (part.enable_gradient_checkpointing if hasattr(part, "enable_gradient_checkpointing")
             else part.gradient_checkpointing_enable)()
    optimizer = _optimizer(settings, groups, device)
    trainable = [p for group in groups for p in group["params"]]
    ema = LoraEMA(trainable, settings.ema_decay) if settings.ema_decay else None
    factor = (warmup_cosine(settings.steps, settings.warmup, 0.0) if settings.schedule == "cosine"
              else warmup_constant(settings.warmup))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    scaler = torch.amp.GradScaler(device.type) if autocast_dtype(device, settings.precision) == torch.float16 else None

    # 3. Resume.
    # ".resume", not ".pt": ComfyUI lists .pt files in a loras folder as LoRAs.
    resume_path = output / f"{settings.name}.resume"
    step, losses = 0, []
    if resume_path.is_file():
        try:
            state = torch.load(resume_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated or foreign file: say so instead of a traceback
            raise ValueError(f"{resume_path.name} cannot be read ({type(exc).__name__}); delete it to "
                             "start over") from None
        if not isinstance(state, dict) or state.get("fingerprint") != settings.fingerprint():
            raise ValueError(f"{resume_path.name} was saved with other settings or data; use another "
                             "--name or delete it to start over")
        network.load_kohya_into(parts, state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load(state["ema"])
        step, losses = int(state["step"]), [float(x) for x in state["losses"]]
        log(f"resuming from step {step}")

    text_cache = Cache(cache.folder) if not settings.train_text_encoder else None

    def conditioning(captions):
        if text_cache is None:
            with autocast(device, settings.precision):
                return model.encode_text(captions, device)
        rows = []
        for caption in captions:
            key = hashlib.sha256(f"{caption}:{base_sha}:text".encode()).hexdigest()
            found = text_cache.get(key)
            if found is None:
                with torch.no_grad():
                    emb, pooled = model.encode_text([caption], device)
                found = text_cache.put(key, {"emb": emb[0].float().cpu(),
                                             **({"pooled": pooled[0].float().cpu()} if pooled is not None else {})})
            rows.append(found)
        pooled = torch.stack([r["pooled"] for r in rows]).to(device) if "pooled" in rows[0] else None
        return torch.stack([r["emb"] for r in rows]).to(device), pooled

    sample_prompts = (list(settings.sample_prompts) or samples.default_prompts(settings.trigger, items[0].caption)
                      if settings.sample_every else [])
    if text_cache is not None and not settings.shuffle_tags:
        # Every caption a step can see is known: encode them now and free the encoders' memory.
        known = {item.caption for item in items} | ({""} if settings.caption_dropout or sample_prompts else set())
        for caption in sorted(known | set(sample_prompts)):
            conditioning([caption])
        for encoder in model.text_encoders.values():
            encoder.to("cpu")

    alphas = model.scheduler.alphas_cumprod.to(device)

    def batch_loss(indices, micro, captions=None):
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + micro)
        rng = random.Random(f"{settings.seed}:{micro}")
        x0 = torch.stack([latents[i]["latent"] for i in indices]).to(device)
        noise = torch.randn(x0.shape, generator=generator)
        if settings.noise_offset:
            noise = noise + settings.noise_offset * torch.randn(x0.shape[:2] + (1, 1), generator=generator)
        noise = noise.to(device)
        t = torch.randint(0, len(alphas), (len(indices),), generator=generator).to(device)
        noisy = model.scheduler.add_noise(x0, noise, t)
        target = noise if settings.prediction_type == "epsilon" else model.scheduler.get_velocity(x0, noise, t)
        if captions is None:
            captions = [dataset.caption_variant(items[i].caption, rng, settings.shuffle_tags,
                                                settings.keep_tokens, settings.caption_dropout) for i in indices]
        emb, pooled = conditioning(captions)
        height, width = x0.shape[-2] * 8, x0.shape[-1] * 8
        time_ids = torch.stack([torch.cat([latents[i]["cond"], torch.tensor([height, width], dtype=torch.float32)])
                                for i in indices]).to(device)
        with autocast(device, settings.precision):
            pred = model.predict(noisy, t, emb, pooled, time_ids)
        loss = torch.nn.functional.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        if settings.min_snr_gamma:
            snr = alphas[t] / (1 - alphas[t])
            weight = torch.clamp(snr, max=settings.min_snr_gamma) / (snr if settings.prediction_type == "epsilon" else snr + 1)
            loss = loss * weight
        return loss.mean()

    # A fixed measure (the first pictures with their own captions, each at three fixed noise
    # draws and timesteps) taken before and after: the run's own evidence that it learned.
    probe = list(range(min(len(items), 4)))

    def fixed_loss() -> float:
        with torch.no_grad():
            return sum(float(batch_loss([i], -1 - draw, [items[i].caption]))
                       for i in probe for draw in range(3)) / (3 * len(probe))

    before = fixed_loss()
    per_epoch = len(dataset.batches_for_epoch(items, settings.repeats, settings.batch_size, settings.seed, 0))

    epoch_batches: dict[int, list] = {}

    def micro_batch(step: int, k: int):
        """Micro-batch k of optimizer step ``step`` for this process: the global stream is
        the same whatever the number of processes, each taking every world_size-th batch."""
        micro = (step * settings.grad_accum + k) * info.world_size + info.rank
        epoch, offset = divmod(micro, per_epoch)
        if epoch not in epoch_batches:
            epoch_batches.clear()
            epoch_batches[epoch] = dataset.batches_for_epoch(items, settings.repeats, settings.batch_size,
                                                             settings.seed, epoch)
        return micro, epoch, epoch_batches[epoch][offset]

    report({"event": "stage", "stage": "training", "step": step, "total": settings.steps})
    saved_step = step
    bar = tqdm(total=settings.steps, initial=step, desc="training", disable=not (settings.progress and main))
    epoch = 0
    while step < settings.steps:
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for k in range(settings.grad_accum):
            micro, epoch, indices = micro_batch(step, k)
            loss = batch_loss(indices, micro) / settings.grad_accum
            (scaler.scale(loss) if scaler else loss).backward()
            total += float(loss.detach())
        if info.enabled:
            total = _average_across_processes(trainable, total, info.world_size)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update()
        step += 1
        losses.append(total)
        bar.update(1)
        bar.set_postfix(loss=f"{total:.4f}")
        report({"event": "progress", "step": step, "total": settings.steps, "loss": total})
        if main and sample_prompts and (step % settings.sample_every == 0 or step == settings.steps):
            drawn = samples.save_samples(model, conditioning, sample_prompts, output / f"{settings.name}_samples", step,
                                         seed=settings.seed, size=settings.resolution, steps=settings.sample_steps,
                                         cfg=settings.sample_cfg, device=device, precision=settings.precision)
            report({"event": "samples", "step": step, "paths": [str(path) for path in drawn]})
        if main and settings.save_every and step % settings.save_every == 0 and step < settings.steps:
            _save_resume(resume_path, parts, optimizer, scheduler, step, losses, settings, ema)
            saved_step = step
        if step < settings.steps and stop_requested():
            bar.close()
            if main and step > saved_step:
                _save_resume(resume_path, parts, optimizer, scheduler, step, losses, settings, ema)
            raise stopped(step)
    bar.close()
    report({"event": "stage", "stage": "saving"})
    after = fixed_loss()
    log(f"loss on a fixed batch: {before:.4f} before, {after:.4f} after {step} steps")
    if not main:
        barrier(info)          # process 0 writes the files below
        shutdown(info)
        return TrainResult(output / f"{settings.name}.safetensors", output / f"{settings.name}.metadata.json",
                           output / f"{settings.name}_loss.png", step, losses, (before, after))
    _save_resume(resume_path, parts, optimizer, scheduler, step, losses, settings, ema)

    # 4. The LoRA file, its sidecar and the loss curve.
    if ema is not None:
        ema.copy_to_parameters()   # the resume file above keeps the live weights
        log(f"the LoRA holds the moving average of its weights (decay {settings.ema_decay})")
    original_names = settings.key_style == "kohya" and family.kohya_original_unet_names   # SDXL's layout
    tensors = network.kohya_state_dict(parts, torch.float16, model.unet_original_names if original_names else None)
    buckets: dict = {}
    for item in items:
        buckets[item.bucket] = buckets.get(item.bucket, 0) + 1
    metadata = network.training_metadata(asdict(settings), family, steps=step, epoch=epoch + 1,
                                         tag_frequency=dataset.tag_frequency(items), base_name=base_path.name,
                                         base_sha256=base_sha, buckets=buckets, num_images=len(items),
                                         started=started)
    metadata["ss_loss_fixed_batch"] = json.dumps({"before": before, "after": after})
    data = network.serialize(tensors, metadata)
    lora_path = write_bytes_atomic(output / f"{settings.name}.safetensors", data)
    sidecar_path = write_text_atomic(output / f"{settings.name}.metadata.json",
                                     json.dumps(network.sidecar(lora_path, data, settings.trigger, asdict(settings), family),
                                                indent=2))
    plot_path = _plot(losses, output / f"{settings.name}_loss.png", settings.name)
    log(f"wrote {lora_path}")
    barrier(info)
    shutdown(info)
    return TrainResult(lora_path, sidecar_path, plot_path, step, losses, (before, after))


def _average_across_processes(parameters: list, loss: float, world_size: int) -> float:
    """Average the LoRA gradients (a few MB, one all-reduce each) and the step's loss over the
    processes, as DDP would: the optimizer then takes the same step everywhere."""
    import torch
    import torch.distributed as dist

    for parameter in parameters:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        dist.all_reduce(parameter.grad)
        parameter.grad.div_(world_size)
    value = torch.tensor([loss], dtype=torch.float64)
    dist.all_reduce(value)
    return float(value) / world_size


def _save_resume(path: Path, parts, optimizer, scheduler, step, losses, settings, ema) -> None:
    import torch

    state = {"step": step, "losses": torch.tensor(losses, dtype=torch.float64),
             "lora": network.kohya_state_dict(parts, torch.float32),
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "fingerprint": settings.fingerprint()}
    if ema is not None:
        state["ema"] = ema.state()
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def _plot(losses: list, path: Path, name: str) -> Path:
    from ..common.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"{name}: training loss")
    return save_figure(fig, path)
