"""``kubik generate``: pictures from a prompt and a single-file checkpoint, outside ComfyUI.

    kubik generate "a castle at dawn, oil painting" --checkpoint sdxl.safetensors -n 2 --out out

Before loading anything it prints the plan: settings and why, LoRAs, and the memory estimate of
each strategy with the one chosen and why; after the run, s/image and the measured peak.
``--json`` prints one object instead: ``{"plan": PreparedGeneration.to_dict(), "images": [paths],
"generation_ids": [...], "seeds": [...], "seconds_per_image", "peak_bytes", "peak_measured",
"notes": [...]}`` (stable keys).
"""
from __future__ import annotations

import json

from ..common.commands import CommandError


def register(subparsers) -> None:
    from ..params.control import CONTROL_TYPES
    from .memory import MEMORY_CHOICES

    p = subparsers.add_parser(
        "generate", help="generate pictures with diffusers (analysis, LoRAs, settings, memory strategies)",
        description="Generate pictures from a single-file SD1.5 or SDXL checkpoint (Pony and Illustrious "
                    "are SDXL), an SD3.5 or a FLUX.1 dev/schnell model with diffusers, offline: the prompt "
                    "analysis, the LoRA recommender and the optimizer's settings as in ComfyUI, memory strategies for small GPUs, PNGs with Kubik "
                    "Save Image's metadata, recorded in the learning store (kubik insights, kubik rate).")
    # Optional to argparse only so that a prompt swallowed by --text-encoders (which takes every
    # word after it) gets an error that says so, rather than argparse's bare "required: prompt".
    p.add_argument("prompt", nargs="?", help="the positive prompt (before --text-encoders, which takes the words after it)")
    p.add_argument("--checkpoint", required=True,
                   help="single-file .safetensors checkpoint (SD1.5, SDXL, SD3.5, FLUX.1), or a FLUX.1/SD3.5 "
                        "diffusion model (models/diffusion_models) with --text-encoders and --vae")
    p.add_argument("--text-encoders", nargs="+", default=[], metavar="FILE",
                   help="the text encoder files a FLUX or SD3.5 file lacks (ComfyUI's models/text_encoders): "
                        "FLUX clip_l + t5xxl_fp16, SD3.5 clip_l + clip_g (+ t5xxl_fp16)")
    p.add_argument("--vae", default=None, metavar="FILE",
                   help="FLUX's ae.safetensors or SD3's VAE (ComfyUI's models/vae), for a diffusion model without it")
    p.add_argument("--family", default="auto", help="model family for the settings (sd15, sdxl, pony, "
                                                     "illustrious ...; default auto: from the file)")
    p.add_argument("--priority", default="balanced", choices=("quality", "balanced", "speed", "low_vram"))
    p.add_argument("--aspect", default="auto", help="W:H such as 16:9, or auto (default)")
    p.add_argument("--negative", default=None, help="negative prompt (default: the analyzer's suggestion)")
    p.add_argument("--loras", default="auto",
                   help="auto (the recommender's picks), none, or name:strength[:clip_strength],... "
                        "(names inside --lora-dir; default auto)")
    p.add_argument("--lora-dir", action="append", default=[], metavar="DIR",
                   help="LoRA folder (repeatable; default $KUBIK_LORAS_DIR)")
    p.add_argument("--memory", default="auto", choices=MEMORY_CHOICES,
                   help="memory strategy (default auto: from free VRAM and the model's size)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--steps", type=int, help="override the step count")
    p.add_argument("--cfg", type=float, help="override CFG")
    p.add_argument("--sampler", dest="sampler_name", help="override the sampler (ComfyUI name)")
    p.add_argument("--scheduler", help="override the scheduler (ComfyUI name)")
    p.add_argument("--width", type=int, help="override the width (multiple of 8)")
    p.add_argument("--height", type=int, help="override the height (multiple of 8)")
    p.add_argument("--controlnet", default=None, metavar="FILE",
                   help="ControlNet .safetensors of the checkpoint's family, with --control-image: SD1.5 or SDXL "
                        "(lllyasviel's or diffusers' layout), or FLUX.1 (XLabs' flux-canny/depth/hed-controlnet, or "
                        "diffusers' layout: InstantX Canny/Union, "
                        "Shakker-Labs Union-Pro and Union-Pro 2.0), or SD3/SD3.5 (InstantX's, TensorArt's SD3.5M, "
                        "Stability's SD3.5 Large blur/canny/depth)")
    p.add_argument("--control-image", default=None, metavar="IMG",
                   help="the control picture (a canny/depth/pose map), scaled to the output size")
    p.add_argument("--mask", default=None, metavar="IMG",
                   help="with an SD3 inpainting ControlNet (alimama-creative/SD3-Controlnet-Inpainting) and the "
                        "picture to repaint as --control-image: white = repaint, black = keep, or transparent = "
                        "repaint in a picture with transparency (any size: scaled to the control picture)")
    p.add_argument("--control-type", default="auto", choices=("auto",) + CONTROL_TYPES,
                   help="what the control picture is (default auto: from the prompt); picks the published strength "
                        "and end, and a FLUX Union ControlNet's mode")
    p.add_argument("--control-strength", type=float, default=None,
                   help="ControlNet strength 0-2 (default: the published value, see kubik params --control)")
    p.add_argument("--ip-adapter", default=None, metavar="FILE",
                   help="IP-Adapter .safetensors (ComfyUI's models/ipadapter; SD1.5 or SDXL as the checkpoint, or "
                        "XLabs' flux-ip-adapter v1/v2 or InstantX's FLUX.1-dev-IP-Adapter for FLUX.1, InstantX's "
                        "SD3.5-Large-IP-Adapter for SD3.5 Large; InstantX's as released (.bin) or .safetensors), "
                        "with --reference")
    p.add_argument("--reference", default=None, metavar="IMG", help="the IP-Adapter's reference picture")
    p.add_argument("--ip-adapter-weight", type=float, default=None, metavar="W",
                   help="IP-Adapter weight 0-2 (default: the published value, see kubik params --control)")
    p.add_argument("--true-cfg", type=float, default=None, metavar="S",
                   help="FLUX with --ip-adapter: true CFG scale 1-10, 1 = off (default: XLabs' published 3.5; "
                        "each step then runs the model twice)")
    p.add_argument("--image-encoder", default=None, metavar="PATH",
                   help="the adapter's CLIP (SigLIP for InstantX's) vision encoder: a folder with config.json and "
                        "model.safetensors, or ComfyUI's clip_vision file (default: an image_encoder folder beside "
                        "the adapter)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first image; image i uses seed+i (default 0)")
    p.add_argument("-n", dest="count", type=int, default=1, help="number of images (default 1)")
    p.add_argument("--out", default="output", help="output folder (default ./output)")
    p.add_argument("--tokenizer", default=None, metavar="DIR",
                   help="folder with CLIP's vocab.json and merges.txt (default: ComfyUI's comfy/sd1_tokenizer "
                        "next to the pack, or under $COMFYUI_DIR)")
    p.add_argument("--t5-tokenizer", default=None, metavar="DIR",
                   help="FLUX/SD3.5: folder with T5's tokenizer.json (default: ComfyUI's "
                        "comfy/text_encoders/t5_tokenizer next to the pack, or under $COMFYUI_DIR)")
    p.add_argument("--store", default=None, help="learning store file or SQLAlchemy URL (default: "
                                                 "$KUBIK_LEARNING_URL, else ~/.local/share/kubik/learning.sqlite3)")
    p.add_argument("--no-record", action="store_true", help="do not record the images in the learning store")
    p.add_argument("--dry-run", action="store_true", help="print the plan and estimates; load nothing")
    p.add_argument("--json", action="store_true", help="print JSON (stable keys, see the module docstring)")
    p.set_defaults(func=run_generate)


def _escaped_names(message: str, args) -> str:
    """``message`` with each given file name holding a line break written escaped (a\\nb.png), so
    the one line printed keeps the name and the fix after it instead of stopping inside the name."""
    from pathlib import Path

    given = [args.checkpoint, args.vae, args.controlnet, args.control_image, args.mask, args.ip_adapter,
             args.reference, args.image_encoder, *(args.text_encoders or [])]
    for name in {Path(path).name for path in given if path}:
        if "\n" in name or "\r" in name:
            message = message.replace(name, repr(name)[1:-1])
    return message


def run_generate(args) -> int:
    from .run import GenerateRequest, generate, plan_generation

    if args.prompt is None:
        if args.text_encoders:
            raise CommandError("no prompt: --text-encoders takes every word after it as a file, so put the "
                               "prompt first: kubik generate \"PROMPT\" --checkpoint FILE --text-encoders FILE ...")
        raise CommandError("no prompt: kubik generate \"PROMPT\" --checkpoint FILE")
    request = GenerateRequest(
        prompt=args.prompt, checkpoint=args.checkpoint, out_dir=args.out, family=args.family,
        priority=args.priority, aspect=args.aspect, loras=args.loras, lora_dirs=args.lora_dir,
        memory=args.memory, seed=args.seed, count=args.count, negative=args.negative,
        overrides={k: getattr(args, k) for k in ("steps", "cfg", "sampler_name", "scheduler", "width", "height")},
        tokenizer=args.tokenizer, text_encoders=args.text_encoders, vae=args.vae, t5_tokenizer=args.t5_tokenizer,
        store=args.store, record=not args.no_record, device=args.device,
        controlnet=args.controlnet, control_image=args.control_image, control_strength=args.control_strength,
        mask=args.mask,
        control_type=args.control_type,
        ip_adapter=args.ip_adapter, reference=args.reference, ip_adapter_weight=args.ip_adapter_weight,
        image_encoder=args.image_encoder, true_cfg=args.true_cfg)
    try:
        prepared = plan_generation(request)
        if not args.json:
            print(_format_plan(prepared), flush=True)
        if args.dry_run:
            if args.json:
                print(json.dumps({"plan": prepared.to_dict()}, indent=2))
            return 0
        from tqdm import tqdm

        with tqdm(total=request.count, desc="generating", unit="image", disable=args.json, leave=False) as bar:
            result = generate(prepared, progress=lambda done, total: bar.update(1))
    except ValueError as exc:      # every engine error is a ValueError with a one-line message
        raise CommandError(_escaped_names(str(exc), args).splitlines()[0]) from None
    if args.json:
        print(json.dumps({"plan": prepared.to_dict(), "images": result.images,
                          "generation_ids": result.generation_ids, "seeds": result.seeds,
                          "seconds_per_image": round(result.seconds_per_image, 3),
                          "peak_bytes": result.peak_bytes, "peak_measured": result.peak_measured,
                          "notes": result.notes}, indent=2))
        return 0
    for path, gid in zip(result.images, result.generation_ids or [""] * len(result.images)):
        print(f"saved {path}" + (f"  (rate it: kubik rate {gid} 1-5)" if gid else ""))
    print(f"{result.seconds_per_image:.2f} s/image; peak {result.peak_bytes / 2**30:.2f} GB "
          f"({result.peak_measured})")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def _format_plan(prepared) -> str:
    plan = prepared.plan
    lines = [f"checkpoint  {prepared.info.family} (settings for {plan.family}), device {prepared.device}",
             f"settings    {plan.steps} steps, cfg {plan.cfg:g}"
             + (f", guidance {plan.guidance:g}" if plan.guidance is not None else "")
             + f", {plan.sampler_name} / {plan.scheduler}, {plan.width}x{plan.height}",
             f"prompt      {prepared.positive}",
             f"negative    {prepared.negative or '-'}",
             "loras       " + (", ".join(f"{i.name} {i.strength_model:g}" for i in prepared.stack.items) or "none")]
    lines.append(f"memory      {prepared.choice.strategy}: {prepared.choice.reason}")
    for e in prepared.choice.estimates:
        seconds = "time not estimated" if e.seconds is None else f"~{e.seconds:.0f} s/image"
        lines.append(f"  {e.strategy:<11} peak ~{e.peak_bytes / 2**30:.2f} GB, {seconds}"
                     + ("" if e.runs_here else " (not here: needs a CUDA GPU)")
                     + (f"; {e.note}" if e.note and e.runs_here else ""))
    if prepared.control is not None:
        c = prepared.control
        lines.append(f"control     {c.control_type}: strength {c.strength:g}, {c.start_percent:g}-{c.end_percent:g}")
        for decision in c.decisions:
            if decision.field in ("strength", "end_percent", "control_mode"):
                lines.append(f"  {decision.field}: {decision.reason} (source: {decision.source})")
    if prepared.ip_adapter is not None:
        ip = prepared.ip_adapter
        lines.append(f"ip-adapter  {ip.file} ({ip.kind}, encoder {ip.encoder}), reference {ip.reference}: weight "
                     f"{ip.weight:g} ({ip.weight_reason}; source: {ip.weight_source})")
        if ip.true_cfg is not None:
            lines.append(f"  true CFG {ip.true_cfg:g} ({ip.true_cfg_reason}; source: {ip.true_cfg_source})")
    lines += [f"note: {n}" for n in prepared.stack.notes + prepared.notes]
    return "\n".join(lines)
