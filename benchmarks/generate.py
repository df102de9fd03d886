"""`kubik generate`'s memory strategies against diffusers' own single strategies, same run.

Cases (each in its own process, so each peak memory is its own), every one generating the same
images from the same single-file checkpoint:
- kubik-<strategy>: kubik_core.generate.memory.apply_strategy, for every strategy that runs on
  this device (on the CPU: none and aggressive; on a CUDA GPU all four);
- diffusers-<one>: one diffusers switch alone: .to(device); enable_model_cpu_offload,
  enable_sequential_cpu_offload (CUDA); group offloading at leaf level; VAE tiling + slicing.
Each case runs --rounds times, the cases taking turns (the machine may be shared: the best
round counts). Prints s/image (after one warm-up image), peak memory (torch.cuda.max_memory_allocated on CUDA;
on the CPU the process's peak RSS while generating, sampled every 10 ms) and the ratio to
diffusers-none. The checkpoint: --checkpoint, else the tiny SD1.5 test checkpoint built with
ComfyUI's classes ($COMFYUI_DIR); a real SDXL file at 1024^2 on a GPU measures the issue's case.

    python benchmarks/generate.py --size 128 --steps 4
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _setup(pipe, case: str, device):
    import torch
    from diffusers.hooks import apply_group_offloading

    from kubik_core.generate.memory import apply_strategy

    if case.startswith("kubik-"):
        apply_strategy(pipe, case[len("kubik-"):], device)
    elif case == "diffusers-none":
        pipe.to(device)
    elif case == "diffusers-model-offload":
        pipe.enable_model_cpu_offload(device=device)
    elif case == "diffusers-sequential-offload":
        pipe.enable_sequential_cpu_offload(device=device)
    elif case == "diffusers-group-offload":
        for name in ("text_encoder", "text_encoder_2", "unet"):
            if getattr(pipe, name, None) is not None:
                apply_group_offloading(getattr(pipe, name), onload_device=device,
                                       offload_device=torch.device("cpu"), offload_type="leaf_level",
                                       use_stream=device.type == "cuda")
        pipe.vae.to(device)
    elif case == "diffusers-vae-tiling":
        pipe.to(device)
        pipe.vae.enable_tiling()
        pipe.vae.enable_slicing()


def _case(args) -> dict:
    import psutil
    import torch

    from kubik_core.generate.checkpoint import load_pipeline

    device = torch.device(args.device)
    pipe, _info = load_pipeline(args.checkpoint, args.tokenizer)
    _setup(pipe, args.case, device)

    def image(seed):
        return pipe("a red fox in the snow, watercolor", negative_prompt="blurry", num_inference_steps=args.steps,
                    guidance_scale=7.0, width=args.size, height=args.size,
                    generator=torch.Generator().manual_seed(seed), output_type="np").images[0]

    with torch.inference_mode():
        image(0)                                   # warm-up (hooks, allocator)
        process, peak, done = psutil.Process(), [0], threading.Event()

        def sample():
            while not done.wait(0.01):
                peak[0] = max(peak[0], process.memory_info().rss)

        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        for seed in range(1, args.images + 1):
            image(seed)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - started) / args.images
        done.set()
        sampler.join()
    peak_bytes = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak[0]
    return {"case": args.case, "seconds_per_image": seconds, "peak_bytes": peak_bytes,
            "measured": "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS while generating"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--tokenizer", default=None)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.case:
        print(json.dumps(_case(args)))
        return 0
    if args.checkpoint is None:
        comfyui = os.environ.get("COMFYUI_DIR")
        if not comfyui:
            print("generate: skipped (no --checkpoint and no COMFYUI_DIR to build the tiny SD1.5 checkpoint)")
            return 0
        sys.path.insert(0, str(REPO / "tests"))
        from kubik_testing.tiny_checkpoint import build_tiny_sd15_checkpoint

        args.checkpoint = str(build_tiny_sd15_checkpoint(Path(tempfile.mkdtemp()) / "tiny_sd15.safetensors",
                                                         Path(comfyui)))
        args.tokenizer = args.tokenizer or str(Path(comfyui) / "comfy" / "sd1_tokenizer")
    cuda = args.device == "cuda"
    cases = ["diffusers-none", "kubik-none", "kubik-aggressive", "diffusers-group-offload", "diffusers-vae-tiling"]
    if cuda:
        cases += ["kubik-balanced", "kubik-sequential", "diffusers-model-offload", "diffusers-sequential-offload"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    results = {}
    for case in [c for _ in range(args.rounds) for c in cases]:
        command = [sys.executable, __file__, "--case", case, "--checkpoint", args.checkpoint, "--size", str(args.size),
                   "--steps", str(args.steps), "--images", str(args.images), "--device", args.device]
        if args.tokenizer:
            command += ["--tokenizer", args.tokenizer]
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
        if done.returncode != 0:
            print(f"{case}: failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if case not in results or result["seconds_per_image"] < results[case]["seconds_per_image"]:
            results[case] = result
    base = results.get("diffusers-none")
    device = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)"
    print(f"generate: {Path(args.checkpoint).name}, {args.size}x{args.size}, {args.steps} steps, {device}, "
          f"best of {args.rounds} rounds")
    for case, r in results.items():
        ratio = "" if base is None else (f"  time {r['seconds_per_image'] / base['seconds_per_image']:.2f}x, "
                                         f"peak {r['peak_bytes'] / base['peak_bytes']:.2f}x of diffusers-none")
        print(f"{case:<30} {r['seconds_per_image']:7.2f} s/image  peak {r['peak_bytes'] / 2**30:6.2f} GB "
              f"({r['measured']}){ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
