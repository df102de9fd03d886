"""`kubik demo`: the README's main job. Runs each capability on embedded defaults (no download;
only model files that ship in the repository; CPU is enough) and writes a readable report.

Sections are listed in DEMO_SECTIONS as (title, module, function); each function takes the
output folder and returns a markdown section. A capability adds its demo by adding a line.
"""
from __future__ import annotations

import json
import time
from importlib import import_module
from pathlib import Path

from .common.atomic import write_text_atomic

DEMO_SECTIONS = (
    ("Prompt analysis and sampling parameters", "demo", "prompt_to_parameters"),
    ("LoRA recommendations and learning", "loras.demo", "recommendations"),
    ("Image classifier trained on scikit-learn's digits", "classify.demo", "run_demo"),
    ("Image to 3D with the shipped tiny model", "recon3d.demo", "run_demo"),
)

# Example prompts: both dialects, weights, a dynamic choice, very different content.
EXAMPLE_PROMPTS = (
    ("comfyui", "sdxl", "quality",
     "portrait photo of an old fisherman, (weathered skin:1.3), golden hour, 85mm lens, "
     "shallow depth of field, film grain"),
    ("comfyui", "sd15", "balanced",
     "masterpiece, best quality, 1girl, silver hair, school uniform, cherry blossoms, "
     "anime style, ((detailed eyes))"),
    ("a1111", "sdxl", "speed",
     "a vast [misty:stormy:0.4] mountain valley at dawn, oil painting, dramatic lighting, "
     "wide angle, (river:1.2) AND a small wooden cabin :0.6"),
    ("comfyui", "flux_dev", "quality",
     "product shot of a {ceramic|glass|copper} teapot on a marble table, studio lighting, "
     "softbox, 8k, highly detailed"),
    ("comfyui", "sd35_large", "low_vram",
     "cyberpunk street market at night, neon signs, rain reflections, crowded, "
     "cinematic composition, volumetric fog, by a concept artist"),
)


# Estimates in the report are for a common consumer GPU, whatever machine runs the demo.
DEMO_DEVICE = "rtx4090"


def prompt_to_parameters(out_dir: Path) -> str:
    from .explain import explain
    from .params import optimize
    from .prompting import analyze_prompt

    rows, details, records = [], [], []
    for i, (dialect, family, priority, prompt) in enumerate(EXAMPLE_PROMPTS, 1):
        analysis = analyze_prompt(prompt, dialect=dialect, seed=7)
        plan = optimize(analysis, family=family, priority=priority, device=DEMO_DEVICE)
        rows.append(f"| {i} | {analysis.style} | {analysis.content_type} | "
                    f"{analysis.complexity.get('overall', 0):.2f} | {plan.family} | {priority} | "
                    f"{plan.steps} | {plan.cfg:g} | {plan.sampler_name} / {plan.scheduler} | "
                    f"{plan.width}x{plan.height} | {plan.estimated_vram_gb:.1f} GB, "
                    f"{plan.estimated_seconds:.1f} s |")
        details.append(f"### {i}. `{prompt}`\n\n*dialect {dialect}, family {family}, "
                       f"priority {priority}*\n\n{explain(analysis, plan, verbosity='standard')}\n")
        records.append({"prompt": prompt, "dialect": dialect, "analysis": analysis.to_dict(),
                        "plan": plan.to_dict()})
    (out_dir / "prompt_to_parameters.json").write_text(json.dumps(records, indent=2))
    table = ("| # | style | content | complexity | family | priority | steps | cfg | "
             "sampler / scheduler | size | est. VRAM, time |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
             + "\n".join(rows))
    intro = (f"Each example prompt is analysed, then sampling parameters are chosen for the model family "
             f"and priority named beside it. Memory and time are estimated for a {DEMO_DEVICE} "
             f"(see kubik_core/params/devices.py). Full records: prompt_to_parameters.json.\n\n")
    return intro + table + "\n\n" + "\n".join(details)


def run_demo(out_dir: Path) -> Path:
    """Run every section, write ``report.md`` into ``out_dir`` and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    package = __package__  # "kubik_core", or "<pack folder>.kubik_core" inside ComfyUI
    parts = ["# KubikAI demo report\n"]
    for title, module, function in DEMO_SECTIONS:
        section_dir = out_dir / module.replace(".", "_")
        section_dir.mkdir(exist_ok=True)
        started = time.perf_counter()
        print(f"[kubik demo] {title} ...", flush=True)
        body = getattr(import_module(f"{package}.{module}"), function)(section_dir)
        elapsed = time.perf_counter() - started
        print(f"[kubik demo] {title}: done in {elapsed:.1f} s", flush=True)
        parts.append(f"## {title}\n\n*({elapsed:.1f} s)*\n\n{body}\n")
    report = out_dir / "report.md"
    write_text_atomic(report, "\n".join(parts))
    return report


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run every capability on embedded defaults and write a report")
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    report = run_demo(Path(args.out))
    print(f"[kubik demo] report written to {report}")
    return 0
