"""`kubik demo`: the README's main job. Runs each capability on embedded defaults (no download;
only model files that ship in the repository; CPU is enough) and writes a readable report.

Sections are listed in DEMO_SECTIONS as (title, module, function), the module being a
capability's ``demo.py``; each function takes the output folder and returns a markdown section.
A capability adds its demo by adding a line. The sections that read prompts share the example
prompts of ``prompting/examples.py``.
"""
from __future__ import annotations

import time
from importlib import import_module
from pathlib import Path

from .common.atomic import write_text_atomic

DEMO_SECTIONS = (
    ("Prompt analysis and sampling parameters", "params.demo", "prompt_to_parameters"),
    ("LoRA recommendations and learning", "loras.demo", "recommendations"),
    ("Image classifier trained on scikit-learn's digits", "classify.demo", "run_demo"),
    ("Image to 3D with the shipped tiny model", "recon3d.demo", "run_demo"),
)

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
