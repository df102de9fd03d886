"""`kubik demo` section: the example prompts analysed, sampling settings chosen for the family
and priority beside each, and every choice explained (prompting -> params -> explain).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..prompting.examples import EXAMPLE_PROMPTS

# Estimates in the report are for a common consumer GPU, whatever machine runs the demo.
DEMO_DEVICE = "rtx4090"


def prompt_to_parameters(out_dir: Path) -> str:
    from ..explain import explain
    from ..prompting import analyze_prompt
    from . import optimize

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
