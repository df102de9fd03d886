"""``kubik 3d train-vae | encode | train-flow | export | reconstruct``: the image-to-3D model's commands.

The same commands run on one CPU, one GPU, or many GPUs under torchrun
(``torchrun --nproc_per_node 8 -m kubik_core 3d train-flow ...``).

``--json`` outputs (stable interfaces):

- train-vae / train-flow: {"trainer", "config", "datasets", "train_shapes", "val_shapes", "steps",
  "model", "seconds", "held_out": {"volume_iou", "chamfer_l1", "chamfer_l2", "normal_consistency",
  "fscore@<t>", "shapes", "empty"}, ...}
- encode: {"output", "shapes", "views", "tokens", "channels", "seconds"}
- reconstruct: {"image", "output", "model", "seed", "resolution", "vertices", "faces", "sdf_queries",
  "sample_seconds", "seconds"}
"""
from __future__ import annotations

import json
import os

MAX_RESOLUTION = 2048   # marching-cubes grid cells per side (extract refuses what memory cannot hold)


def register_model_commands(sub) -> None:
    p = sub.add_parser("train-vae", help="train the shape VAE on datasets made by preprocess/synth")
    p.add_argument("datasets", nargs="+", help="dataset folders (with manifest.json)")
    p.add_argument("-o", "--out", required=True, help="run folder: OUT/vae.safetensors, metrics, loss.png")
    _training_arguments(p)
    p.set_defaults(func=_train_vae)

    p = sub.add_parser("encode", help="encode every shape of datasets with a trained VAE (input of train-flow)")
    p.add_argument("datasets", nargs="+", help="dataset folders")
    p.add_argument("--vae", required=True, help="VAE model file (.safetensors from train-vae)")
    p.add_argument("-o", "--output", required=True, help="latents file (.safetensors)")
    p.add_argument("--device", default="auto", help="cpu, cuda, auto (auto)")
    p.add_argument("--json", action="store_true", help="print a summary as JSON")
    p.set_defaults(func=_encode)

    p = sub.add_parser("train-flow", help="train the image-conditioned flow model on encoded latents")
    p.add_argument("latents", help="latents file from `kubik 3d encode` (it names its datasets and VAE)")
    p.add_argument("-o", "--out", required=True, help="run folder: OUT/model.safetensors (VAE + flow + image encoder)")
    p.add_argument("--image-encoder-weights", help="local safetensors file with pretrained weights for the "
                                                   "config's timm backbone (none: trained from scratch)")
    _training_arguments(p)
    p.set_defaults(func=_train_flow)

    p = sub.add_parser("export", help="copy a model file, optionally in half precision (half the size)")
    p.add_argument("model", help="model file (.safetensors)")
    p.add_argument("-o", "--output", required=True, help="new model file (.safetensors; its .json is written beside it)")
    p.add_argument("--half", action="store_true", help="store weights as float16 (they load as float32)")
    p.set_defaults(func=_export)

    p = sub.add_parser("reconstruct", help="one image -> a mesh file (GLB/OBJ/PLY)")
    p.add_argument("image", help="image file; transparent background or a plain one")
    p.add_argument("-o", "--output", required=True, help="mesh file: .glb, .obj or .ply")
    p.add_argument("--model", help="model file (default: the shipped tiny demo model)")
    p.add_argument("--steps", type=int, help="sampling steps (model default)")
    p.add_argument("--cfg", type=float, help="classifier-free guidance scale (model default)")
    p.add_argument("--sampler", choices=("euler", "heun"), help="ODE solver (model default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=128, help="marching-cubes grid (128)")
    p.add_argument("--dense", action="store_true", help="query every grid point instead of refining near the surface")
    p.add_argument("--device", default="auto", help="cpu, cuda, auto (auto)")
    p.add_argument("--json", action="store_true", help="print a summary as JSON")
    p.set_defaults(func=_reconstruct)


def _training_arguments(p) -> None:
    p.add_argument("--config", default="tiny", help="config name (tiny, base) or JSON path (tiny)")
    p.add_argument("--steps", type=int, help="override the config's step count")
    p.add_argument("--batch-size", type=int, help="override the config's global batch size")
    p.add_argument("--lr", type=float, help="override the config's learning rate")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=JSON",
                   help="override any config value, e.g. --set vae.width=256 (repeatable)")
    p.add_argument("--device", default="auto", help="cpu, cuda, auto; under torchrun each rank takes its GPU (auto)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="auto = bf16 autocast on CUDA, fp32 on the CPU")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations (less memory)")
    p.add_argument("--resume", action="store_true", help="continue the run in OUT from its last checkpoint")
    p.add_argument("--val-every", type=int, default=500, help="held-out metrics every N steps (500)")
    p.add_argument("--val-shapes", type=int, default=8, help="held-out shapes per validation (8)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="checkpoint every N steps (500)")
    p.add_argument("--minutes", type=float, help="stop after this many minutes as if the last step were "
                   "reached (held-out metrics, checkpoint, model file); the schedule still follows --steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _overrides(args, section: str) -> dict:
    from ..cli import CommandError
    from ..common.bounded_json import BoundedJSONError
    from ..common.bounded_json import loads as bounded_loads

    overrides: dict[str, dict] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        part, dot, name = key.partition(".")
        if not (sep and dot and name):
            raise CommandError(f"--set {item!r}: write SECTION.KEY=VALUE, e.g. vae.width=256")
        try:
            overrides.setdefault(part, {})[name] = bounded_loads(value, max_depth=8, max_bytes=64 * 1024)
        except BoundedJSONError:  # not JSON: the text itself (the schema then says what it must be)
            overrides.setdefault(part, {})[name] = value
    for flag, key in (("steps", "steps"), ("batch_size", "batch_size"), ("lr", "lr")):
        if getattr(args, flag) is not None:
            overrides.setdefault(section, {})[key] = getattr(args, flag)
    return overrides


def _common_training(args, section: str) -> dict:
    """The arguments every trainer takes, checked before any data is read."""
    from . import cli_checks as check

    if args.steps is not None:
        check.count(args.steps, "--steps", high=1_000_000_000)
    if args.batch_size is not None:
        check.count(args.batch_size, "--batch-size", high=65536)
    if args.lr is not None:
        check.positive(args.lr, "--lr")
    if args.minutes is not None:
        check.positive(args.minutes, "--minutes")
    check.count(args.val_every, "--val-every")
    check.count(args.val_shapes, "--val-shapes")
    check.count(args.checkpoint_every, "--checkpoint-every")
    check.seed(args.seed)
    check.output_folder(args.out, "-o")
    check.torch_device(args.device)
    return {"config": args.config, "overrides": _overrides(args, section), "device": args.device,
            "resume": args.resume, "seed": args.seed, "val_every": args.val_every, "val_shapes": args.val_shapes,
            "checkpoint_every": args.checkpoint_every, "precision": args.precision,
            "gradient_checkpointing": args.gradient_checkpointing, "show_progress": not args.json,
            "minutes": args.minutes}


def _print(summary: dict, as_json: bool, lines: list[str]) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print("\n".join(lines))


def _held_out_line(summary: dict) -> str:
    held = summary.get("held_out")
    if not held:
        return "no held-out shapes: add shapes for validation metrics"
    return (f"held-out ({held['shapes']} shapes): volume IoU {held.get('volume_iou', 0):.3f}, "
            f"Chamfer-L1 {held.get('chamfer_l1', float('nan')):.4f}, F@0.05 {held.get('fscore@0.05', float('nan')):.3f}")


def _run_training(fn, args, section: str, **extra) -> int:
    from ..cli import CommandError

    common = _common_training(args, section)
    try:
        summary = fn(**extra, **common)
    except (FileExistsError, FileNotFoundError, ValueError, FloatingPointError) as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:  # the run folder failed between the check and the writes (disk full ...)
        raise CommandError(f"cannot write the run in {args.out}: {exc.strerror or exc}") from None
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary
        _print(summary, args.json, [f"{summary['trainer']}: {summary['steps']} steps in {summary['seconds']} s "
                                    f"-> {summary['model']}", _held_out_line(summary)])
    return 0


def _train_vae(args) -> int:
    from .train_vae import train_vae

    return _run_training(train_vae, args, "train_vae", datasets=args.datasets, out=args.out)


def _train_flow(args) -> int:
    from pathlib import Path

    from ..cli import CommandError
    from .train_flow import train_flow

    weights = args.image_encoder_weights
    if weights is not None and (not Path(weights).is_file() or Path(weights).suffix != ".safetensors"):
        raise CommandError(f"--image-encoder-weights {weights}: give an existing .safetensors file (timm or "
                           "Hugging Face model.safetensors of the config's backbone)")

    return _run_training(train_flow, args, "train_flow", latents=args.latents, out=args.out,
                         image_encoder_weights=args.image_encoder_weights)


def _encode(args) -> int:
    from ..cli import CommandError
    from . import cli_checks as check
    from .encode import encode_datasets

    _model_file_output(args.output)
    device = check.torch_device(args.device)
    try:
        summary = encode_datasets(args.datasets, args.vae, args.output, device=device, show_progress=not args.json)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"-o {args.output}: cannot be written ({exc.strerror or exc})") from None
    _print(summary, args.json, [f"encoded {summary['shapes']} shapes x {summary['views']} views -> {summary['output']}"])
    return 0


def _export(args) -> int:
    import torch

    from ..cli import CommandError
    from .models.shape_model import load_model, save_model

    _model_file_output(args.output)
    try:
        model = load_model(args.model)
        path = save_model(model, args.output, model.info, dtype=torch.float16 if args.half else torch.float32)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"-o {args.output}: cannot be written ({exc.strerror or exc})") from None
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB, {model.kind})")
    return 0


def _model_file_output(path) -> None:
    """-o of encode and export: a .safetensors file that can be written (checked before the work)."""
    from pathlib import Path

    from ..cli import CommandError
    from . import cli_checks as check

    if Path(path).suffix != ".safetensors":
        raise CommandError(f"-o {path}: the output must end in .safetensors")
    check.output_file(path, "-o")


def _reconstruct(args) -> int:
    from pathlib import Path

    from ..cli import CommandError
    from . import cli_checks as check
    from .demo_model import demo_model_path
    from .mesh.export import MESH_FORMATS
    from .pipeline import load_model, reconstruct

    if args.steps is not None:
        check.count(args.steps, "--steps", high=1000)
    if args.cfg is not None:
        check.positive(args.cfg, "--cfg", zero=True)
    check.count(args.resolution, "--resolution", low=2, high=MAX_RESOLUTION)
    check.seed(args.seed)
    if Path(args.output).suffix.lower().lstrip(".") not in MESH_FORMATS:
        raise CommandError(f"-o {args.output}: give the mesh file a suffix: "
                           f"{', '.join('.' + f for f in MESH_FORMATS)}")
    check.output_file(args.output, "-o")
    device = check.torch_device(args.device)
    try:
        model = load_model(args.model or demo_model_path(), device, kind="image-to-shape")
        summary = reconstruct(args.image, args.output, model=model, seed=args.seed, steps=args.steps,
                              cfg=args.cfg, sampler=args.sampler, resolution=args.resolution,
                              hierarchical=not args.dense)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"-o {args.output}: cannot be written ({exc.strerror or exc})") from None
    _print(summary, args.json, [f"{summary['output']}: {summary['vertices']} vertices, {summary['faces']} faces "
                                f"in {summary['seconds']} s"])
    return 0
