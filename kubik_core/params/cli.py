"""``kubik params``: sampling settings for a prompt, and why.

    kubik params "a castle at dawn, oil painting" --family sdxl --aspect 16:9 --json

``--json`` prints SamplingPlan.to_dict(): a stable interface with at least family, steps, cfg,
sampler_name, scheduler, width, height, guidance, estimated_vram_gb, estimated_seconds (null
when the CPU time is not estimated yet), decisions (field, value, reason, source), overrides,
suggested and notes.

``kubik explain`` (explain/cli.py) takes the same arguments (``add_prompt_arguments``) and
plans the same way (``plan_for_arguments``). Both commands stay fast (a fraction of a second):
they import no torch unless a GPU may be present (devices.local_device) and never measure the
CPU unless told to with ``--calibrate``; without a cached CPU profile the time is reported as
not estimated, with a note saying so.
``--seed`` and ``--wildcards`` resolve ``{a|b}`` and ``__name__`` as ``kubik analyze`` does.
``--control TYPE`` (or ``auto``) adds ControlNet / IP-Adapter advice (params/control.py): in the
text as a "Control" part of the explanation, in ``--json`` under the key ``control``
(ControlAdvice.to_dict(): control_type, strength, start_percent, end_percent,
ip_adapter_weight, decisions with reason and source, notes).
"""
from __future__ import annotations

import argparse
import json
import os

from ..common.commands import CommandError
from .control import CONTROL_TYPES
from .devices import DEVICE_CHOICES
from .plan import MODES, PRIORITIES


def register(subparsers) -> None:
    params = subparsers.add_parser(
        "params", help="choose KSampler settings (steps, CFG, sampler, size) for a prompt",
        description="Analyse a prompt and choose sampling settings for a model family from the "
                    "model makers' published recommendations.")
    add_prompt_arguments(params)
    params.add_argument("--mode", default="AUTO", type=str.upper, choices=MODES,
                        help="AUTO ignores the overrides below; ASSISTED lets them win; MANUAL uses "
                             "them with family defaults for the rest (default AUTO)")
    params.add_argument("--steps", type=int, help="override the step count")
    params.add_argument("--cfg", type=float, help="override CFG")
    params.add_argument("--guidance", type=float, help="override FLUX distilled guidance")
    params.add_argument("--sampler", dest="sampler_name", help="override the sampler name")
    params.add_argument("--scheduler", help="override the scheduler")
    params.add_argument("--width", type=int, help="override the width (multiple of 8)")
    params.add_argument("--height", type=int, help="override the height (multiple of 8)")
    params.add_argument("--json", action="store_true", help="print the plan as JSON (stable keys)")
    params.set_defaults(func=run_params)


def add_prompt_arguments(parser: argparse.ArgumentParser) -> None:
    """The prompt, model and device arguments that `kubik params` and `kubik explain` share."""
    parser.add_argument("prompt", help="the positive prompt")
    parser.add_argument("--family", default="sdxl",
                        help="model family id (sdxl, sd15, flux_dev, pony, ...), or 'auto' with "
                             "--checkpoint (default sdxl)")
    parser.add_argument("--checkpoint", help="checkpoint file (path or name): with --family auto, "
                                             "the family is read from its safetensors metadata and name")
    parser.add_argument("--priority", default="balanced", choices=PRIORITIES)
    parser.add_argument("--aspect", default="auto", help="W:H such as 16:9, or auto (default)")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES,
                        help="device profile for the VRAM/time estimate (default: this machine)")
    parser.add_argument("--dialect", default="comfyui", choices=("comfyui", "a1111"),
                        help="prompt weighting syntax (default comfyui)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed that resolves {a|b} and __wildcard__ choices (default 0), as kubik analyze")
    parser.add_argument("--wildcards", metavar="DIR", default=None,
                        help="folder of wildcard .txt files for __name__ in the prompt, as kubik analyze")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure this CPU for the time estimate if it was not measured yet (about "
                             "two seconds, with torch; kept in Kubik's cache folder); without it a CPU "
                             "that was never measured gets no time estimate")
    parser.add_argument("--control", choices=("auto", *CONTROL_TYPES), default=None,
                        help="also advise ControlNet strength, start/end and IP-Adapter weight for "
                             "this control type ('auto': chosen from the prompt)")
    parser.add_argument("--controlnet", metavar="NAME", default="",
                        help="with --control: your ControlNet file's name, so a model whose card "
                             "publishes its own figures gets them")


def plan_for_arguments(args, overrides=None, mode="AUTO"):
    """(PromptAnalysis, SamplingPlan) for the arguments of ``add_prompt_arguments``; bad input
    becomes a CommandError."""
    from ..prompting import analyze_prompt
    from . import ParamsError, detect_family, optimize
    from .checkpoint import read_safetensors_metadata
    from .plan import ModelInfo

    if args.wildcards is not None and not os.path.isdir(args.wildcards):
        raise CommandError(f"--wildcards: no folder {args.wildcards!r}; give the folder that "
                           "holds your wildcard .txt files")
    try:
        analysis = analyze_prompt(args.prompt, dialect=args.dialect, seed=args.seed,
                                  wildcards_dir=args.wildcards)
        info = None
        if args.checkpoint:
            info = ModelInfo(checkpoint_name=os.path.basename(args.checkpoint))
            if os.path.isfile(args.checkpoint):
                info.metadata = read_safetensors_metadata(args.checkpoint)
        elif args.family == "auto":
            raise CommandError("--family auto needs --checkpoint (a file or a file name)")
        detection = detect_family(info, args.family)
        plan = optimize(analysis, detection.family, priority=args.priority, aspect_ratio=args.aspect,
                        mode=mode, overrides=overrides, device=args.device, detection=detection,
                        calibrate=args.calibrate)
    except (ParamsError, ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    return analysis, plan


def control_for_arguments(args, analysis, plan):
    """The ControlAdvice that ``--control`` asks for, or None without it."""
    if args.control is None:
        if args.controlnet:
            raise CommandError("--controlnet needs --control TYPE (or --control auto)")
        return None
    from .control import advise_control

    return advise_control(analysis, plan.family, args.control, os.path.basename(args.controlnet))


def run_params(args) -> int:
    overrides = {name: getattr(args, name) for name in
                 ("steps", "cfg", "guidance", "sampler_name", "scheduler", "width", "height")}
    analysis, plan = plan_for_arguments(args, overrides, args.mode)
    advice = control_for_arguments(args, analysis, plan)
    if args.json:
        data = plan.to_dict()
        if advice is not None:
            data["control"] = advice.to_dict()
        print(json.dumps(data, indent=2))
        return 0
    from ..explain import explain
    from .plan import format_seconds

    rows = [("family", f"{plan.family} (confidence {plan.family_confidence:.1f})"),
            ("steps", plan.steps), ("cfg", f"{plan.cfg:g}"),
            ("guidance", "-" if plan.guidance is None else f"{plan.guidance:g}"),
            ("sampler", plan.sampler_name), ("scheduler", plan.scheduler),
            ("size", f"{plan.width}x{plan.height}"),
            ("estimate", f"{plan.estimated_vram_gb:.1f} GB, " + (
                "time not estimated" if plan.estimated_seconds is None
                else format_seconds(plan.estimated_seconds)) + f" on {plan.device}")]
    if advice is not None:
        rows += [("control", f"{advice.control_type}: strength {advice.strength:g}, "
                             f"{advice.start_percent:g}-{advice.end_percent:g}"),
                 ("ip-adapter", f"weight {advice.ip_adapter_weight:g}")]
    print("\n".join(f"{name:<10} {value}" for name, value in rows))
    print()
    print(explain(analysis, plan, verbosity="standard", sections=[advice] if advice else []))
    return 0
