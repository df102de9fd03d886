"""``kubik lora train``: train an SD1.5 or SDXL LoRA from a folder of captioned pictures."""
from __future__ import annotations

import argparse

from ..common.commands import CommandError
from ..common.precision import PRECISIONS


def register(subparsers) -> None:
    lora = subparsers.add_parser("lora", help="train SD1.5 and SDXL LoRAs",
                                 description="Train SD1.5 and SDXL LoRAs (kohya-format output that ComfyUI, "
                                             "A1111 and CivitAI load).")
    sub = lora.add_subparsers(dest="lora_command", metavar="SUBCOMMAND")
    sub.required = True
    p = sub.add_parser("train", help="train a LoRA on a folder of captioned pictures",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Train a LoRA for an SD1.5 or SDXL checkpoint (the family is read from the "
                                   "file). Pictures with <stem>.txt captions (or a JSONL "
                                   "manifest); writes <output>/<name>.safetensors, .metadata.json, a loss "
                                   "curve PNG and <name>.resume, from which a rerun continues.")
    p.add_argument("data", help="folder of pictures with .txt captions, or a .jsonl manifest")
    p.add_argument("--base", required=True, help="single-file checkpoint (.safetensors) of the SD1.5 family (SD1.5 "
                                                 "and its fine-tunes) or the SDXL family (SDXL, Pony, Illustrious ...)")
    p.add_argument("--output", required=True, help="folder for the LoRA, its sidecar, loss curve and resume file")
    p.add_argument("--name", required=True, help="file name of the LoRA (no extension)")
    p.add_argument("--trigger", default="", help="trigger word: recorded in the metadata, and starts the "
                                                 "caption of pictures that have none")
    p.add_argument("--caption-model", default=None,
                   help="local folder of a BLIP captioning model (transformers layout, e.g. "
                        "Salesforce/blip-image-captioning-base saved with save_pretrained; never downloaded): "
                        "captions the pictures that have no .txt, after the trigger word")
    p.add_argument("--write-captions", action="store_true",
                   help="save the captions made for pictures without one as <stem>.txt beside them "
                        "(default: used for this run only)")
    p.add_argument("--resolution", type=int, default=0,
                   help="bucket area is at most this squared (multiple of 64); 0: the base model's own, "
                        "512 for SD1.5, 1024 for SDXL")
    p.add_argument("--max-upscale", type=float, default=1.0, help="never enlarge a picture more than this")
    p.add_argument("--repeats", type=int, default=1, help="times each picture is seen per epoch")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--steps", type=int, default=500, help="optimizer steps in all (a resumed run stops here too)")
    p.add_argument("--lr", type=float, default=1e-4, help="UNet LoRA learning rate")
    p.add_argument("--text-encoder-lr", type=float, default=5e-5)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (scale = alpha / rank)")
    p.add_argument("--conv-rank", type=int, default=0,
                   help="also train LoRA on the UNet's convolutions at this rank (LoCon, kohya's conv_dim; 0 = off)")
    p.add_argument("--conv-alpha", type=float, default=1.0, help="alpha of the convolution LoRA")
    p.add_argument("--ema-decay", type=float, default=0.0,
                   help="write an exponential moving average of the LoRA weights (e.g. 0.999; 0 = the last step's)")
    p.add_argument("--targets", choices=("attention", "attention+ff"), default="attention",
                   help="UNet layers that get LoRA: attention projections, or those plus proj_in/out and feed-forward")
    p.add_argument("--train-text-encoder", action="store_true",
                   help="also train LoRA on the text encoders (SD1.5's CLIP-L, SDXL's two)")
    p.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="autocast type for the UNet and text encoders (auto: bf16 on GPUs that have it, "
                        "else fp32); the VAE always runs in fp32, where fp16 SDXL VAEs overflow")
    p.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false")
    p.add_argument("--noise-offset", type=float, default=0.0)
    p.add_argument("--min-snr-gamma", type=float, default=5.0, help="min-SNR loss weighting (0 = off)")
    p.add_argument("--caption-dropout", type=float, default=0.0, help="share of steps trained on an empty caption")
    p.add_argument("--shuffle-tags", action="store_true", help="shuffle comma-separated tags after the kept ones")
    p.add_argument("--keep-tokens", type=int, default=1, help="leading tags that --shuffle-tags keeps in place")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", choices=("memory", "disk"), default="memory",
                   help="where latents and text-encoder outputs are cached (disk: reused by later runs)")
    p.add_argument("--cache-dir", default=None, help="disk cache folder (default: $KUBIK_CACHE_DIR or ~/.cache/kubik, lora_train/)")
    p.add_argument("--save-every", type=int, default=0, help="write the resume file every N steps (it is always written at the end)")
    p.add_argument("--optimizer", choices=("auto", "adamw", "adamw8bit", "adafactor"), default="auto",
                   help="auto: 8-bit AdamW on CUDA where bitsandbytes is installed, else AdamW; adafactor "
                        "keeps less optimizer state (any device)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--tokenizer", default=None, help="folder with CLIP's vocab.json and merges.txt (default: "
                                                     "the ComfyUI this pack is in, or $COMFYUI_DIR)")
    p.add_argument("--key-style", choices=("kohya", "diffusers"), default="kohya",
                   help="UNet key names in the LoRA: kohya (the layout sd-scripts writes: the original one "
                        "for SDXL, lora_unet_input_blocks_..., diffusers' for SD1.5) or diffusers "
                        "(lora_unet_down_blocks_...); ComfyUI, A1111 and Forge load both")
    p.add_argument("--sample-every", type=int, default=0,
                   help="draw sample pictures every N steps and at the end, into <output>/<name>_samples/ (0: never)")
    p.add_argument("--sample-prompt", action="append", default=None,
                   help="a prompt to sample (repeat for more; each keeps its own fixed seed; default: the "
                        "trigger, else the first caption)")
    p.add_argument("--sample-steps", type=int, default=20, help="Euler steps per sample picture")
    p.add_argument("--sample-cfg", type=float, default=5.0, help="guidance scale of the sample pictures")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument("--progress-json", action="store_true",
                   help="print progress as one JSON object a line on stdout (for programs running the trainer)")
    p.add_argument("--stop-on-stdin", action="store_true",
                   help="stop cleanly (finished steps saved to the resume file, exit status 130) when a line "
                        "'stop' or the end of standard input arrives; SIGTERM always does")
    p.set_defaults(func=_train)


def settings_from_args(args):
    """The TrainSettings a parsed ``kubik lora train`` command line asks for."""
    from .network import UNET_TARGETS, UNET_TARGETS_WIDE
    from .train import TrainSettings

    return TrainSettings(
        data=args.data, base=args.base, output=args.output, name=args.name, trigger=args.trigger,
        caption_model=args.caption_model, write_captions=args.write_captions,
        resolution=args.resolution, max_upscale=args.max_upscale, repeats=args.repeats,
        batch_size=args.batch_size, steps=args.steps, lr=args.lr, text_encoder_lr=args.text_encoder_lr,
        rank=args.rank, alpha=args.alpha, conv_rank=args.conv_rank, conv_alpha=args.conv_alpha,
        ema_decay=args.ema_decay,
        unet_targets=UNET_TARGETS_WIDE if args.targets == "attention+ff" else UNET_TARGETS,
        train_text_encoder=args.train_text_encoder, schedule=args.schedule, warmup=args.warmup,
        grad_accum=args.grad_accum, precision=args.precision,
        gradient_checkpointing=args.gradient_checkpointing, noise_offset=args.noise_offset,
        min_snr_gamma=args.min_snr_gamma, caption_dropout=args.caption_dropout,
        shuffle_tags=args.shuffle_tags, keep_tokens=args.keep_tokens, seed=args.seed, cache=args.cache,
        cache_dir=args.cache_dir, save_every=args.save_every, device=args.device,
        tokenizer=args.tokenizer, optimizer=args.optimizer, progress=args.progress, key_style=args.key_style,
        sample_every=args.sample_every, sample_prompts=tuple(args.sample_prompt or ()),
        sample_steps=args.sample_steps, sample_cfg=args.sample_cfg)


def _train(args) -> int:
    import sys

    from ..checkpoints import CheckpointError
    from .dataset import DatasetError
    from .runner import STOPPED_EXIT, StopRequests, json_reporter
    from .train import TrainingStopped, train

    settings = settings_from_args(args)
    report = json_reporter() if args.progress_json else None
    try:
        result = train(settings, report=report, should_stop=StopRequests(args.stop_on_stdin))
    except TrainingStopped as stop:
        if report:
            report({"event": "stopped", "step": stop.step})
        print(f"stopped at step {stop.step}; the same command continues from there", file=sys.stderr)
        return STOPPED_EXIT
    except (DatasetError, CheckpointError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    except FileNotFoundError as exc:
        raise CommandError(f"{exc.filename}: no such file") from None
    if report:
        report({"event": "done", "lora": str(result.lora), "loss_plot": str(result.loss_plot),
                "steps": result.steps})
    return 0
