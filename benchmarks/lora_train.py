"""SDXL LoRA training steps: kubik's settings against diffusers' example settings, same run.

Cases (each in its own process, so each peak memory is its own):
- kubik: latents and text-encoder outputs cached once before training (the caching time is
  printed apart), so a step is the UNet's forward and backward plus the optimizer;
- diffusers-example: what diffusers' train_text_to_image_lora_sdxl.py does by default: fp32, no
  latent cache, so every step loads and resizes the picture, runs the VAE and both text encoders.
Both train the same UNet LoRA (rank --rank, attention projections) on scikit-image's photos at one
--resolution bucket, batch 1, with AdamW. Prints it/s, peak memory (RSS on the CPU, allocated on
CUDA) and the ratios. The checkpoint: --checkpoint, else the tiny SDXL-family test checkpoint
built with ComfyUI's classes ($COMFYUI_DIR); a real SDXL file measures the real thing.

    python benchmarks/lora_train.py --steps 6 --resolution 128
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _case(args) -> dict:
    import torch
    from PIL import Image
    import skimage.data

    from kubik_core.lora_train import dataset, network
    from kubik_core.lora_train.base_model import detect_family, load_base_model

    device = torch.device(args.device)
    folder = Path(tempfile.mkdtemp(prefix="kubik-bench-"))
    items = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        path = folder / f"{name}.png"
        Image.fromarray(getattr(skimage.data, name)()).save(path)
        items.append(dataset.Item(path, f"a photo of {name}", (512, 512), (args.resolution, args.resolution)))
    model = load_base_model(args.checkpoint, detect_family(args.checkpoint), args.tokenizer)
    for part in model.modules():
        part.requires_grad_(False).to(device)
    network.add_lora(model.unet, args.rank, args.rank, network.UNET_TARGETS)
    model.unet.to(device).train()
    if args.case == "kubik" and args.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(network.lora_parameters(model.unet).values(), lr=1e-4)
    scaling = model.vae.config.scaling_factor

    def encode(item):
        pixels, cond = dataset.load_pixels(item)
        with torch.no_grad():
            latent = model.vae.encode(pixels[None].to(device)).latent_dist.sample() * scaling
            emb, pooled = model.encode_text([item.caption], device)
        return latent, emb, pooled, torch.tensor([list(cond) + [args.resolution] * 2], dtype=torch.float32, device=device)

    cache_seconds = 0.0
    if args.case == "kubik":
        started = time.perf_counter()
        cached = [encode(item) for item in items]
        cache_seconds = time.perf_counter() - started
        model.vae.to("cpu")

    def step(i):
        latent, emb, pooled, time_ids = cached[i % len(items)] if args.case == "kubik" else encode(items[i % len(items)])
        noise = torch.randn_like(latent)
        t = torch.randint(0, 1000, (1,), device=device)
        noisy = model.scheduler.add_noise(latent, noise, t)
        pred = model.predict(noisy, t, emb, pooled, time_ids)
        loss = torch.nn.functional.mse_loss(pred, noise)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(0)                                   # warm-up (allocations, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for i in range(1, args.steps + 1):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"it_s": args.steps / seconds, "peak_mb": peak / 2**20, "cache_s": cache_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--tokenizer", default=None)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false")
    parser.add_argument("--case", choices=("kubik", "diffusers-example"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(_case(args)))
        return
    if args.checkpoint is None:
        from tests.kubik_testing.tiny_checkpoint import build_tiny_sdxl_checkpoint

        comfyui = os.environ.get("COMFYUI_DIR")
        if not comfyui:
            print("lora_train: skipped (pass --checkpoint, an SDXL .safetensors, or set COMFYUI_DIR to "
                  "build the tiny test checkpoint)")
            return
        args.checkpoint = str(build_tiny_sdxl_checkpoint(Path(tempfile.mkdtemp()) / "tiny_sdxl.safetensors", Path(comfyui)))
        name = "tiny SDXL-family (115 M UNet)"
    else:
        name = Path(args.checkpoint).name
    results = {}
    for case in ("diffusers-example", "kubik"):
        command = [sys.executable, __file__, "--case", case, "--checkpoint", args.checkpoint, "--steps", str(args.steps),
                   "--resolution", str(args.resolution), "--rank", str(args.rank), "--device", args.device]
        command += ["--tokenizer", args.tokenizer] if args.tokenizer else []
        command += [] if args.gradient_checkpointing else ["--no-gradient-checkpointing"]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[case] = json.loads(done.stdout.strip().splitlines()[-1])
    base, ours = results["diffusers-example"], results["kubik"]
    print(f"lora_train {name} {args.resolution}^2 batch 1 rank {args.rank} on {args.device}, fp32, "
          f"gradient checkpointing {'on' if args.gradient_checkpointing else 'off'} (kubik):")
    print(f"  diffusers-example settings: {base['it_s']:.3f} it/s, peak {base['peak_mb']:.0f} MB")
    print(f"  kubik (cached latents + text): {ours['it_s']:.3f} it/s, peak {ours['peak_mb']:.0f} MB "
          f"(caching 4 pictures took {ours['cache_s']:.1f} s once)")
    print(f"  ratio: {ours['it_s'] / base['it_s']:.2f}x it/s, {ours['peak_mb'] / base['peak_mb']:.2f}x peak memory")


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    main()
