"""Sample pictures during training, so a user sees what the LoRA learns before it is done.

Each prompt is drawn with its own fixed seed (the run's seed + the prompt's number) at every
sampling step, so the pictures of one prompt differ only by what the LoRA learned in between.
Sampling is Euler with classifier-free guidance against the empty prompt, at the training
resolution, as kohya's sd-scripts samples; it draws from its own generator, so a run with samples
trains exactly as one without.
"""
from __future__ import annotations

from pathlib import Path


def default_prompts(trigger: str, first_caption: str) -> list[str]:
    """The trigger, else the first picture's caption: what a user would try first."""
    return [trigger.strip() or first_caption]


def sample_latents(model, conditioning, prompt: str, *, seed: int, width: int, height: int, steps: int,
                   cfg: float, device, precision: str):
    """Denoised latents [1, 4, height/8, width/8] for ``prompt`` with the UNet as it is now.

    ``conditioning(captions)`` returns (hidden states, pooled) as the training loop encodes them;
    ``model`` is the loop's base_model.BaseModel.
    """
    import torch
    from diffusers import EulerDiscreteScheduler

    from ..common.precision import autocast

    scheduler = EulerDiscreteScheduler.from_config(model.scheduler.config)
    scheduler.set_timesteps(steps, device=device)
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn((1, 4, height // 8, width // 8), generator=generator).to(device)
    latents = latents * scheduler.init_noise_sigma
    emb, pooled = conditioning([prompt, ""])
    time_ids = torch.tensor([[height, width, 0, 0, height, width]] * 2, dtype=torch.float32, device=device)
    for t in scheduler.timesteps:
        scaled = scheduler.scale_model_input(torch.cat([latents, latents]), t)
        with autocast(device, precision):
            pred = model.predict(scaled, t, emb, pooled, time_ids).float()
        positive, negative = pred.chunk(2)
        latents = scheduler.step(negative + cfg * (positive - negative), t, latents).prev_sample
    return latents


def save_samples(model, conditioning, prompts: list[str], folder: Path, step: int, *, seed: int, size: int,
                 steps: int, cfg: float, device, precision: str) -> list[Path]:
    """``folder``/step_<step>_<n>.png for each prompt (PNG, written atomically); the UNet is put
    back in training mode and the VAE back where it was."""
    import numpy as np
    import torch
    from PIL import Image

    from ..common.atomic import atomic_path

    unet, vae = model.unet, model.vae
    vae_device = next(vae.parameters()).device
    unet.eval()
    paths = []
    try:   # the scheduler may draw from torch's global generator: training's draws stay untouched
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for number, prompt in enumerate(prompts):
                latents = sample_latents(model, conditioning, prompt, seed=seed + number, width=size, height=size,
                                         steps=steps, cfg=cfg, device=device, precision=precision)
                vae.to(device)
                pixels = vae.decode(latents / vae.config.scaling_factor).sample[0]
                array = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
                path = folder / f"step_{step:06d}_{number}.png"
                with atomic_path(path) as temporary:
                    Image.fromarray(np.ascontiguousarray(array)).save(temporary, format="PNG")
                paths.append(path)
    finally:
        vae.to(vae_device)
        unet.train()
    return paths
