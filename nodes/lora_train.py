"""Kubik Train LoRA: an SD1.5 or SDXL LoRA from a folder of captioned pictures, trained inside ComfyUI.

The engine is ``kubik_core.lora_train`` (``kubik lora train``). The training runs in a process
of its own (``kubik_core.lora_train.runner``), never in ComfyUI's prompt thread: this class
checks the inputs (``kubik_core.lora_train.job``), asks ComfyUI to unload its models, turns the
child's progress into ComfyUI's progress bar, stops the child on Interrupt (the finished steps
are kept: queueing the same node again continues), and makes the new LoRA appear in ComfyUI's
LoRA lists without a restart.
"""
from __future__ import annotations

import os
import re

from . import comfy_bridge
from ..kubik_core.common.precision import PRECISIONS
from ..kubik_core.lora_train import job
from ..kubik_core.lora_train.network import KEY_STYLES
from ..kubik_core.lora_train.train import OPTIMIZERS

CATEGORY = "KubikAI/lora_train"
DATA_HINT = ("give a folder inside ComfyUI's input folder (e.g. 'my_character' for input/my_character) "
             "holding the pictures and their .txt captions, or a .jsonl manifest there; the server's "
             "owner may allow more folders with KUBIK_LORA_DATA_DIRS")
NO_CAPTIONER = "none"
CAPTIONER_HINT = ("put a BLIP captioner saved with save_pretrained (config.json, model.safetensors, processor "
                  "files) in a folder of models/kubik_captioners and refresh the list, or choose 'none'")


class KubikTrainLora:
    DESCRIPTION = ("Trains an SDXL LoRA (SDXL, Pony, Illustrious checkpoints) or an SD1.5 LoRA on a folder of pictures with "
                   ".txt captions and saves it in the loras folder in kohya's format, with training "
                   "metadata, a Lora-Manager sidecar and a loss curve. Training runs in a separate process "
                   "after ComfyUI unloads its models; Cancel stops it and keeps the finished steps, so "
                   "queueing again continues the run.")
    CATEGORY = CATEGORY
    FUNCTION = "train"
    RETURN_TYPES = ("STRING", "IMAGE")
    RETURN_NAMES = ("lora_name", "loss_curve")
    OUTPUT_TOOLTIPS = ("The new LoRA's name as LoRA loaders list it (e.g. 'my_character.safetensors').",
                       "The training loss per step, as an image.")
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "dataset_folder": ("STRING", {"default": "", "tooltip":
                    "Folder of training pictures (png, jpg, webp) with <picture>.txt captions, inside "
                    "ComfyUI's input folder: 'my_character' means input/my_character. A picture without "
                    "a caption is captioned from the trigger and its file name. A .jsonl manifest works too."}),
                "checkpoint": (comfy_bridge.checkpoint_names(), {"tooltip":
                    "The base model to train on (a .safetensors checkpoint: SDXL, Pony, Illustrious ... "
                    "or SD1.5; the family is read from the file). Use the LoRA with the model it was "
                    "trained on."}),
                "lora_name": ("STRING", {"default": "my_lora", "tooltip":
                    "File name of the new LoRA in the loras folder (subfolders allowed: "
                    "'characters/alice'). Letters, digits, spaces, '_', '-', '.'."}),
                "trigger": ("STRING", {"default": "", "tooltip":
                    "Trigger word or phrase: recorded in the LoRA, and it starts the caption of "
                    "pictures that have none. Put it in your prompts to call the LoRA up."}),
                "steps": ("INT", {"default": 500, "min": 1, "max": 100000, "tooltip":
                    "Optimizer steps in all (a continued run stops here too). 500-2000 is usual for "
                    "a character with 10-30 pictures."}),
                "rank": ("INT", {"default": 16, "min": 1, "max": 256, "tooltip":
                    "LoRA rank (network dim): capacity and file size. 8-32 for characters and styles."}),
                "alpha": ("FLOAT", {"default": 16.0, "min": 0.01, "max": 1024.0, "step": 0.5, "tooltip":
                    "LoRA alpha: the update is scaled by alpha / rank (alpha = rank: no scaling)."}),
                "learning_rate": ("FLOAT", {"default": 1e-4, "min": 1e-7, "max": 1e-2, "step": 1e-5,
                                            "round": False, "tooltip":
                    "Learning rate of the UNet's LoRA (1e-4 is kohya's usual SDXL value)."}),
                "resolution": ("INT", {"default": 1024, "min": 64, "max": 4096, "step": 64, "tooltip":
                    "Training size: pictures go to aspect-ratio buckets of at most this squared "
                    "area (1024 for SDXL, 512 for SD1.5). Pictures are never enlarged beyond max_upscale."}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip":
                    "Pictures per step (more needs more GPU memory)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "tooltip":
                    "Seed of every random draw (order, noise, timesteps): the same seed, data and "
                    "settings give the same LoRA."}),
                "existing_lora": (list(job.EXISTING_CHOICES), {"default": "keep", "tooltip":
                    "When the LoRA already exists - keep: stop with an error (an unfinished run of it "
                    "is continued); continue training: train its saved run on up to 'steps' and "
                    "replace it; start over: delete it and its saved run, then train anew."}),
            },
            "optional": {
                "repeats": ("INT", {"default": 1, "min": 1, "max": 1000, "tooltip":
                    "How many times each picture is seen per epoch."}),
                "conv_rank": ("INT", {"default": 0, "min": 0, "max": 256, "tooltip":
                    "Also train LoRA on the UNet's convolutions at this rank (LoCon; more detail and "
                    "texture, larger file; 0 = off)."}),
                "conv_alpha": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 1024.0, "step": 0.5, "tooltip":
                    "Alpha of the convolution LoRA (its update is scaled by conv_alpha / conv_rank)."}),
                "ema_decay": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 0.9999, "step": 0.0001, "tooltip":
                    "Save a moving average of the LoRA weights instead of the last step's (e.g. 0.999: "
                    "smoother, less tied to the last pictures seen; 0 = off)."}),
                "train_text_encoder": ("BOOLEAN", {"default": False, "tooltip":
                    "Also train LoRA layers on both text encoders (stronger trigger words, more memory)."}),
                "text_encoder_lr": ("FLOAT", {"default": 5e-5, "min": 0.0, "max": 1e-2, "step": 1e-5,
                                              "round": False, "tooltip":
                    "Learning rate of the text encoders' LoRA (with train_text_encoder)."}),
                "targets": (["attention", "attention+ff"], {"default": "attention", "tooltip":
                    "UNet layers that get LoRA: the attention projections, or those plus the "
                    "transformer's in/out projections and feed-forward layers."}),
                "schedule": (["cosine", "constant"], {"default": "cosine", "tooltip":
                    "Learning-rate schedule after the warm-up."}),
                "warmup": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip":
                    "Steps over which the learning rate rises linearly from 0."}),
                "grad_accum": ("INT", {"default": 1, "min": 1, "max": 256, "tooltip":
                    "Batches whose gradients are summed per step (a larger effective batch without "
                    "more memory)."}),
                "precision": (list(PRECISIONS), {"default": "auto", "tooltip":
                    "Compute precision of the UNet and text encoders: auto is bf16 on GPUs that have "
                    "it, else fp32. The VAE always runs in fp32 (fp16 SDXL VAEs overflow)."}),
                "gradient_checkpointing": ("BOOLEAN", {"default": True, "tooltip":
                    "Recompute activations instead of storing them: much less GPU memory, about a "
                    "third slower."}),
                "noise_offset": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip":
                    "Offset noise (0.05-0.1 helps very dark or bright pictures; 0 = off)."}),
                "min_snr_gamma": ("FLOAT", {"default": 5.0, "min": 0.0, "max": 20.0, "step": 0.5, "tooltip":
                    "Min-SNR loss weighting (5 is the paper's value; 0 = off)."}),
                "caption_dropout": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 0.99, "step": 0.01, "tooltip":
                    "Share of steps trained with an empty caption."}),
                "shuffle_tags": ("BOOLEAN", {"default": False, "tooltip":
                    "Shuffle comma-separated caption tags each step (keeping the first keep_tokens)."}),
                "keep_tokens": ("INT", {"default": 1, "min": 0, "max": 100, "tooltip":
                    "Leading caption tags that shuffle_tags keeps in place (the trigger)."}),
                "max_upscale": ("FLOAT", {"default": 1.0, "min": 1.0, "max": 8.0, "step": 0.1, "tooltip":
                    "The most a small picture is enlarged to fill its bucket (1 = never)."}),
                "save_every": ("INT", {"default": 100, "min": 0, "max": 100000, "tooltip":
                    "Save the run every N steps, so that a crash loses at most N steps (Cancel "
                    "always saves; 0 = only at the end)."}),
                "optimizer": (list(OPTIMIZERS), {"default": "auto", "tooltip":
                    "auto: 8-bit AdamW on CUDA GPUs where bitsandbytes is installed, else AdamW. "
                    "adafactor keeps less optimizer state, on any device."}),
                "sample_every": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip":
                    "Draw sample pictures every N steps and at the end, into <lora name>_samples/ beside "
                    "the LoRA (0 = never). Each prompt keeps its own seed, so its pictures show what "
                    "the LoRA learned in between."}),
                "sample_prompts": ("STRING", {"default": "", "multiline": True, "tooltip":
                    "Prompts of the sample pictures, one a line (empty: the trigger, else the first "
                    "caption)."}),
                "key_style": (list(KEY_STYLES), {"default": "kohya", "tooltip":
                    "UNet key names in the file: kohya (the layout kohya's sd-scripts writes and most "
                    "CivitAI LoRAs use: the original one for SDXL, diffusers' for SD1.5) or diffusers. "
                    "ComfyUI, A1111 and Forge load both."}),
                "caption_model": ([NO_CAPTIONER, *comfy_bridge.captioner_names()], {"default": NO_CAPTIONER,
                                                                                    "tooltip":
                    "A local BLIP captioning model that describes the pictures without a .txt caption "
                    "(the caption then reads '<trigger>, <what the model saw>'); none: their file names "
                    "are used. Lists the folders in models/kubik_captioners holding a model saved with "
                    "save_pretrained (e.g. Salesforce/blip-image-captioning-base); nothing is downloaded."}),
                "write_captions": ("BOOLEAN", {"default": False, "tooltip":
                    "Save the captions the caption_model made as <picture>.txt beside the pictures, to "
                    "read and correct them; the next run then uses them as your own captions."}),
            },
        }

    def train(self, dataset_folder, checkpoint, lora_name, trigger, steps, rank, alpha, learning_rate,
              resolution, batch_size, seed, existing_lora, repeats=1, conv_rank=0, conv_alpha=1.0,
              ema_decay=0.0, train_text_encoder=False,
              text_encoder_lr=5e-5, targets="attention", schedule="cosine", warmup=0, grad_accum=1,
              precision="auto", gradient_checkpointing=True, noise_offset=0.0, min_snr_gamma=5.0,
              caption_dropout=0.0, shuffle_tags=False, keep_tokens=1, max_upscale=1.0, save_every=100,
              optimizer="auto", sample_every=0, sample_prompts="", key_style="kohya",
              caption_model=NO_CAPTIONER, write_captions=False):
        from ..kubik_core.lora_train.network import UNET_TARGETS, UNET_TARGETS_WIDE
        from ..kubik_core.lora_train.runner import TrainingFailed, run_training
        from ..kubik_core.lora_train.train import TrainSettings

        data_roots = comfy_bridge.training_data_roots()
        data = job.resolve_inside(dataset_folder, data_roots, "dataset_folder", DATA_HINT)
        base = comfy_bridge.checkpoint_path(checkpoint) if isinstance(checkpoint, str) else None
        if base is None:
            raise ValueError(f"checkpoint: {str(checkpoint)[:120]!r} is not in the checkpoints folder; "
                             "choose one from the list (refresh it after adding files)")
        if not base.lower().endswith((".safetensors", ".sft")):
            raise ValueError(f"checkpoint: {checkpoint} is not a .safetensors file; the trainer reads "
                             "safetensors checkpoints only (convert it, or choose another)")
        captioner = None if caption_model == NO_CAPTIONER else job.model_folder_inside(
            caption_model, comfy_bridge.captioner_folders(), "caption_model", "models/kubik_captioners",
            CAPTIONER_HINT)
        lora_roots = comfy_bridge.lora_folders()
        if not lora_roots:
            raise RuntimeError("lora_name: ComfyUI has no loras folder to save into; add one "
                               "(models/loras or extra_model_paths.yaml)")
        subfolders, stem = job.lora_name_parts(lora_name)
        output = job.output_folder(lora_roots[0], subfolders)
        settings = TrainSettings(
            data=str(data), base=base, output=str(output), name=stem, trigger=trigger.strip(),
            resolution=resolution, max_upscale=max_upscale, repeats=repeats, batch_size=batch_size,
            steps=steps, lr=learning_rate, text_encoder_lr=text_encoder_lr, rank=rank, alpha=alpha,
            conv_rank=conv_rank, conv_alpha=conv_alpha, ema_decay=ema_decay,
            unet_targets=UNET_TARGETS_WIDE if targets == "attention+ff" else UNET_TARGETS,
            train_text_encoder=bool(train_text_encoder), schedule=schedule, warmup=warmup,
            grad_accum=grad_accum, precision=precision, gradient_checkpointing=bool(gradient_checkpointing),
            noise_offset=noise_offset, min_snr_gamma=min_snr_gamma, caption_dropout=caption_dropout,
            shuffle_tags=bool(shuffle_tags), keep_tokens=keep_tokens, seed=seed, cache="disk",
            save_every=save_every, device=comfy_bridge.training_device(),
            tokenizer=comfy_bridge.clip_tokenizer_folder(), optimizer=optimizer, progress=False,
            key_style=key_style, sample_every=sample_every,
            caption_model=str(captioner) if captioner else None, write_captions=bool(captioner and write_captions),
            sample_prompts=tuple(line.strip() for line in str(sample_prompts).splitlines() if line.strip()))
        try:
            settings.check()
        except ValueError as exc:
            raise ValueError(_as_inputs(str(exc))) from None
        job.prepare_output(output, stem, existing_lora)

        comfy_bridge.free_memory_for_training()
        bar = comfy_bridge.progress_bar(steps)

        def on_event(event: dict) -> None:
            if isinstance(event.get("step"), int) and isinstance(event.get("total"), int):
                bar.update_absolute(event["step"], event["total"])

        hidden = {str(data): dataset_folder.strip(), str(output): "<loras>", os.path.dirname(base): "<checkpoints>"}
        hidden.update({os.path.realpath(root): "<input>" for root in data_roots[:1]})
        if captioner:
            hidden[str(captioner)] = caption_model
        try:
            outcome = run_training(settings, on_event, comfy_bridge.interrupt_requested)
        except TrainingFailed as exc:
            raise RuntimeError(f"Kubik Train LoRA: training failed: {_as_inputs(job.redact(str(exc), hidden))}") from None
        if outcome.stopped:
            comfy_bridge.check_interrupt()   # raises ComfyUI's interrupt when Cancel stopped it
            raise RuntimeError(f"Kubik Train LoRA: training stopped at step {outcome.last_event.get('step', 0)}; "
                               "queue it again to continue")
        comfy_bridge.forget_file_list("loras")
        name = os.path.join(*subfolders, f"{stem}.safetensors")   # as ComfyUI lists it on this system
        return (name, _image(outcome.last_event.get("loss_plot")))


def _as_inputs(message: str) -> str:
    """The trainer's message with its command-line flags named as this node's inputs."""
    renamed = {"lr": "learning_rate", "name": "lora_name", "base": "checkpoint", "data": "dataset_folder"}
    return re.sub(r"--([a-z][a-z0-9-]*)",
                  lambda m: renamed.get(m.group(1), m.group(1).replace("-", "_")), message)


def _image(path):
    """A PNG as ComfyUI's IMAGE [1, H, W, 3] in 0..1 (a black pixel when the plot is missing)."""
    import numpy as np
    import torch
    from PIL import Image

    if not path or not os.path.isfile(path):
        return torch.zeros(1, 1, 1, 3)
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels)[None]


NODE_CLASS_MAPPINGS = {"KubikTrainLora": KubikTrainLora}
NODE_DISPLAY_NAME_MAPPINGS = {"KubikTrainLora": "Kubik Train LoRA"}
