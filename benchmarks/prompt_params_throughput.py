"""Throughput of prompt analysis + parameter optimisation on ONE CPU core.

Goal (issue 2): at least 10,000 prompts/s over a corpus of at least 10,000 varied prompts.
Baselines measured in the same run, on the same corpus:
  * ComfyUI's own prompt weighting (comfy.sd1_clip: escape_important + token_weights), the
    parse that CLIPTextEncode does before tokenising - only when COMFYUI_DIR points to a
    ComfyUI checkout whose modules import;
  * our parser alone (kubik_core.prompting.parse_prompt), to show what analysis costs on top.

    python benchmarks/prompt_params_throughput.py [--n 10000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from prompt_corpus import make_corpus  # noqa: E402

FAMILIES = ("sdxl", "sd15", "flux_dev", "pony", "sd35_large", "flux_schnell")
PRIORITIES = ("balanced", "quality", "speed", "low_vram")


def best_rate(fn, items, repeat: int) -> float:
    fn(items[:200])  # warm caches and lazy tables
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn(items)
        best = min(best, time.perf_counter() - started)
    return len(items) / best


def comfyui_parser():
    comfy_dir = os.environ.get("COMFYUI_DIR")
    if not comfy_dir:
        return None, "COMFYUI_DIR not set"
    sys.path.insert(0, comfy_dir)
    try:
        from comfy.cli_args import args as comfy_args
        comfy_args.cpu = True  # as `main.py --cpu`: do not look for a GPU driver on import
        from comfy import sd1_clip
    except Exception as exc:  # ComfyUI's requirements missing
        return None, f"comfy.sd1_clip does not import ({type(exc).__name__}: {exc})"

    def run(prompts):
        for p in prompts:
            sd1_clip.token_weights(sd1_clip.escape_important(p), 1.0)
    return run, "ok"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    from kubik_core.params import optimize
    from kubik_core.prompting import analyze_prompt, parse_prompt

    corpus = make_corpus(args.n)

    def ours(prompts):
        for i, p in enumerate(prompts):
            analysis = analyze_prompt(p, dialect="comfyui", seed=i)
            optimize(analysis, family=FAMILIES[i % len(FAMILIES)], priority=PRIORITIES[i % len(PRIORITIES)])

    def ours_parse(prompts):
        for p in prompts:
            parse_prompt(p, dialect="comfyui")

    device = "cpu, 1 core"
    rate = best_rate(ours, corpus, args.repeat)
    print(f"analyze+optimize | {device} | {len(corpus)} prompts | {rate:,.0f} prompts/s | "
          f"baseline: goal 10,000 prompts/s | ratio {rate / 10_000:.2f}x goal")
    parse_rate = best_rate(ours_parse, corpus, args.repeat)
    comfy, why = comfyui_parser()
    if comfy is None:
        print(f"parse only (ours) | {device} | {len(corpus)} prompts | {parse_rate:,.0f} prompts/s | "
              f"baseline: ComfyUI token_weights skipped ({why})")
    else:
        comfy_rate = best_rate(comfy, corpus, args.repeat)
        print(f"parse only (ours) | {device} | {len(corpus)} prompts | {parse_rate:,.0f} prompts/s | "
              f"baseline: ComfyUI token_weights {comfy_rate:,.0f} prompts/s | ratio {parse_rate / comfy_rate:.2f}x")
        print(f"analyze+optimize vs ComfyUI parse alone | {device} | ratio {rate / comfy_rate:.2f}x")


if __name__ == "__main__":
    main()
