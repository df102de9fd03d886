"""`kubik lora train` end to end on a tiny SDXL-shaped checkpoint and real photos.

The checkpoint is built with ComfyUI's own model classes (tests/kubik_testing/tiny_checkpoint.py),
so the module needs COMFYUI_DIR and skips cleanly without it. Two CLI runs share one output:
3 steps, then a rerun to 5 steps that resumes from the first. Both run offline (HF_HUB_OFFLINE=1,
an empty Hugging Face cache): the base model's configs must come from the file itself.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
if not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").exists():
    pytest.skip("COMFYUI_DIR is not set to a ComfyUI checkout: the tiny SDXL checkpoint cannot be built",
                allow_module_level=True)

from tests.kubik_testing.tiny_checkpoint import build_tiny_sdxl_checkpoint  # noqa: E402

from .training_runs import REPO, comfy_lora_reports, fixed_batch_losses, offline_env, read_lora, write_photos  # noqa: E402

pytestmark = pytest.mark.timeout(900)


def _arguments(tmp: Path, steps: int, output: str, grad_accum: int, key_style: str, extra: tuple) -> list[str]:
    """`kubik lora train ...` (without the program) for the runs of this module."""
    return ["lora", "train", str(tmp / "photos"),
            "--base", str(tmp / "tiny_sdxl.safetensors"), "--output", str(tmp / output), "--name", "kbk_style",
            "--grad-accum", str(grad_accum), "--key-style", key_style,
            "--trigger", "kbk style", "--resolution", "64", "--steps", str(steps), "--lr", "1e-3",
            "--rank", "4", "--alpha", "4", "--conv-rank", "2", "--conv-alpha", "1", "--ema-decay", "0.5", "--train-text-encoder", "--precision", "fp32",
            "--cache", "disk", "--no-gradient-checkpointing", "--no-progress",
            "--device", "cpu", "--tokenizer", str(Path(COMFYUI_DIR) / "comfy" / "sd1_tokenizer"), *extra]


def _train(tmp: Path, steps: int, output: str = "loras", grad_accum: int = 2,
           launcher: tuple = (), key_style: str = "kohya", extra: tuple = ()) -> subprocess.CompletedProcess:
    """The command as a process of its own (``launcher``: e.g. torchrun's module instead of kubik_core)."""
    command = [sys.executable, *(launcher or ("-m", "kubik_core")),
               *_arguments(tmp, steps, output, grad_accum, key_style, extra)]
    return subprocess.run(command, cwd=REPO, env=offline_env(tmp), capture_output=True, text=True, timeout=900)


def _train_in_process(tmp: Path, steps: int, key_style: str = "kohya") -> subprocess.CompletedProcess:
    """The same command through kubik_core.cli.main() in this process, with the environment,
    thread count and random state of a process of its own. A `kubik` process spends ~10 s of
    this machine's CPU importing diffusers and transformers; the first run of the fixture (and
    the torchrun test) keep the real process boundary, the resumed runs need none."""
    import contextlib
    import io
    import signal

    import torch

    from kubik_core.cli import main

    out, err = io.StringIO(), io.StringIO()
    arguments = _arguments(tmp, steps, "loras", 2, key_style, ())
    environment = {k: v for k, v in offline_env(tmp).items() if k.startswith(("HF_", "KUBIK_"))}
    threads, sigterm = torch.get_num_threads(), signal.getsignal(signal.SIGTERM)
    try:
        with pytest.MonkeyPatch.context() as patch, torch.random.fork_rng(devices=[]), \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            for name, value in environment.items():
                patch.setenv(name, value)
            torch.set_num_threads(1)        # as OMP_NUM_THREADS=1 in the processes of _train
            status = main(arguments)
    finally:
        torch.set_num_threads(threads)
        signal.signal(signal.SIGTERM, sigterm)   # the trainer's stop request handler
    return subprocess.CompletedProcess(["kubik", *arguments], status, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora_train")
    build_tiny_sdxl_checkpoint(tmp / "tiny_sdxl.safetensors", Path(COMFYUI_DIR))
    write_photos(tmp / "photos")
    # Samples of two prompts at steps 2 and 3 (the torchrun test below trains without samples and
    # must agree with this run: drawing samples does not change the training).
    first = _train(tmp, 3, extra=("--sample-every", "2", "--sample-steps", "3", "--sample-prompt", "kbk style",
                                  "--sample-prompt=a cup of coffee"))
    assert first.returncode == 0, first.stderr[-3000:]
    shutil.copy(tmp / "loras" / "kbk_style.resume", tmp / "after_3_steps.resume")
    cache_files = sorted((tmp / "kubik-cache").rglob("*.safetensors"))
    second = _train_in_process(tmp, 5, key_style="diffusers")
    assert second.returncode == 0, second.stderr[-3000:]
    shutil.copy(tmp / "loras" / "kbk_style.safetensors", tmp / "kbk_style_diffusers_keys.safetensors")
    # The same run once more: already at step 5, it only writes the LoRA again, in kohya's layout.
    third = _train_in_process(tmp, 5)
    assert third.returncode == 0, third.stderr[-3000:]
    return tmp, first, second, cache_files


def test_a_rerun_resumes_from_the_saved_step_and_reuses_the_latent_cache(trained):
    tmp, first, second, cache_files = trained
    assert "resuming" not in first.stdout
    assert "resuming from step 3" in second.stdout
    metadata, _ = read_lora(tmp / "loras" / "kbk_style.safetensors")
    assert metadata["ss_steps"] == "5"
    assert len(cache_files) == 3                                    # one latent per photo
    assert sorted((tmp / "kubik-cache").rglob("*.safetensors")) == cache_files


def test_training_reduces_the_loss_and_a_resume_starts_from_the_saved_weights(trained):
    _, first, second, _ = trained
    untrained, after_3 = fixed_batch_losses(first)
    resumed, after_5 = fixed_batch_losses(second)
    assert after_3 < untrained and after_5 < untrained
    assert resumed == after_3        # the same probe on the restored LoRA weights


def test_the_lora_has_kohya_keys_metadata_sidecar_and_loss_curve(trained):
    tmp, *_ = trained
    metadata, tensors = read_lora(tmp / "loras" / "kbk_style.safetensors")
    prefixes = {key.split("_")[1] for key in tensors}
    assert prefixes == {"unet", "te1", "te2"}
    modules = {key.split(".")[0] for key in tensors}
    assert all({f"{m}.lora_down.weight", f"{m}.lora_up.weight", f"{m}.alpha"} <= set(tensors) for m in modules)
    assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight" in tensors
    assert tuple(tensors["lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"].shape) == (4, 768)
    assert float(tensors["lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.alpha"]) == 4.0
    # LoCon: the ResNet convolutions at their own rank and alpha (3x3 down, 1x1 up)
    conv = "lora_unet_input_blocks_1_0_in_layers_2"
    assert tuple(tensors[f"{conv}.lora_down.weight"].shape) == (2, 320, 3, 3)
    assert tuple(tensors[f"{conv}.lora_up.weight"].shape) == (320, 2, 1, 1)
    assert float(tensors[f"{conv}.alpha"]) == 1.0
    assert "lora_unet_input_blocks_3_0_op.lora_down.weight" in tensors              # the downsampler
    assert json.loads(metadata["ss_network_args"])["conv_dim"] == "2"
    assert metadata["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert metadata["modelspec.trigger_phrase"] == "kbk style"
    assert metadata["modelspec.resolution"] == "64x64"
    assert metadata["ss_base_model_version"] == "sdxl_base_v1-0"
    assert metadata["ss_network_dim"] == "4" and metadata["ss_network_alpha"] == "4.0"
    import hashlib

    base_hash = hashlib.sha256((tmp / "tiny_sdxl.safetensors").read_bytes()).hexdigest()
    assert metadata["ss_new_sd_model_hash"] == metadata["modelspec.base_model_hash_sha256"] == base_hash
    assert json.loads(metadata["ss_tag_frequency"])["1_kbk_style"]["kbk style"] == 3
    data = (tmp / "loras" / "kbk_style.safetensors").read_bytes()
    header = int.from_bytes(data[:8], "little")
    assert metadata["sshs_model_hash"] == hashlib.sha256(data[8 + header:]).hexdigest()
    sidecar = json.loads((tmp / "loras" / "kbk_style.metadata.json").read_text())
    assert sidecar["sha256"] == hashlib.sha256(data).hexdigest()
    assert sidecar["civitai"]["trainedWords"] == ["kbk style"] and sidecar["base_model"] == "SDXL 1.0"
    assert (tmp / "loras" / "kbk_style_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_file_holds_the_moving_average_and_the_resume_file_the_live_weights(trained):
    import torch

    tmp, *_ = trained
    _, tensors = read_lora(tmp / "loras" / "kbk_style.safetensors")
    state = torch.load(tmp / "loras" / "kbk_style.resume", weights_only=True)
    assert state["ema"]["updates"] == 5
    live = state["lora"]
    ups = [key for key in live if key.endswith("lora_up.weight") and key.startswith("lora_te1_")]
    # the text encoders' keys are the same in both layouts: the file's weights are not the live ones ...
    assert any(not torch.equal(tensors[key], live[key].half()) for key in ups)
    # ... but each is one of the average's tensors
    averages = {tuple(v.flatten()[:4].tolist()) for v in (x.half().float() for x in state["ema"]["values"])}
    assert all(tuple(tensors[key].float().flatten()[:4].tolist()) in averages for key in ups)


def test_samples_are_drawn_every_n_steps_with_a_fixed_seed_per_prompt(trained):
    import numpy as np

    tmp, *_ = trained
    folder = tmp / "loras" / "kbk_style_samples"
    assert sorted(p.name for p in folder.iterdir()) == ["step_000002_0.png", "step_000002_1.png",
                                                        "step_000003_0.png", "step_000003_1.png"]
    pictures = {p.stem[5:]: np.asarray(Image.open(p), dtype=np.float64) for p in folder.iterdir()}
    assert all(p.shape == (64, 64, 3) and p.std() > 5 for p in pictures.values())
    # one prompt at two steps: the same start noise, a slightly changed LoRA; two prompts: two seeds
    same_prompt = np.abs(pictures["000002_0"] - pictures["000003_0"]).mean()
    other_prompt = np.abs(pictures["000002_0"] - pictures["000002_1"]).mean()
    assert same_prompt < other_prompt / 10


@pytest.fixture(scope="module")
def comfy_reports(trained):
    """ComfyUI's loader on the LoRA (kohya key layout) and on the same weights with diffusers keys."""
    tmp, *_ = trained
    return comfy_lora_reports(COMFYUI_DIR, tmp / "tiny_sdxl.safetensors", tmp / "loras" / "kbk_style.safetensors",
                              tmp / "kbk_style_diffusers_keys.safetensors")


def test_comfyui_loads_every_key_and_the_unet_output_changes(comfy_reports):
    report = comfy_reports[0]
    assert report["model_type"] == "Segmind_Vega"           # an SDXL to ComfyUI (supported_models)
    assert report["problems"] == []
    assert report["unet_patches"] + report["clip_patches"] == report["lora_modules"]
    assert report["clip_patches"] > 0 and report["finite"] and report["output_change"] > 1e-4


def test_kohya_and_diffusers_key_layouts_load_alike_in_comfyui(trained, comfy_reports):
    tmp, *_ = trained
    _, kohya = read_lora(tmp / "loras" / "kbk_style.safetensors")
    _, diffusers = read_lora(tmp / "kbk_style_diffusers_keys.safetensors")
    assert {k.split("_")[2] for k in kohya if k.startswith("lora_unet_")} == {"input", "middle", "output"}
    assert {k.split("_")[2] for k in diffusers if k.startswith("lora_unet_")} == {"down", "mid", "up"}
    assert len(kohya) == len(diffusers)
    assert sorted(float(v.float().abs().sum()) for v in kohya.values()) == \
        sorted(float(v.float().abs().sum()) for v in diffusers.values())          # the same weights
    with_kohya, with_diffusers = comfy_reports
    assert with_kohya["problems"] == with_diffusers["problems"] == []
    assert with_kohya["unet_patches"] == with_diffusers["unet_patches"] > 0
    assert with_kohya["output_change"] > 1e-4
    assert with_kohya["output"] == with_diffusers["output"]                          # the same result


def test_the_lora_library_lists_it_as_sdxl_with_its_trigger(trained):
    tmp, *_ = trained
    from kubik_core.loras.library import scan_library

    entries = {e.name: e for e in scan_library([tmp / "loras"], cache_path=None).sorted_entries()}
    assert set(entries) == {"kbk_style.safetensors"}        # the resume file is not listed as a LoRA
    assert entries["kbk_style.safetensors"].base == "sdxl"
    assert entries["kbk_style.safetensors"].triggers == ["kbk style"]


@pytest.mark.slow
def test_torchrun_two_processes_train_the_same_lora_as_one(trained):
    """2 processes x 1 micro-batch per step (gloo) against 1 process x 2 micro-batches per step:
    the same global batches, so the same LoRA weights after 3 steps."""
    import torch

    tmp, *_ = trained
    double = _train(tmp, 3, output="ddp", grad_accum=1,
                    launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "kubik_core"))
    assert double.returncode == 0, double.stderr[-3000:]
    assert double.stdout.count("wrote ") == 1                   # process 0 alone writes
    one = torch.load(tmp / "after_3_steps.resume", weights_only=True)
    two = torch.load(tmp / "ddp" / "kbk_style.resume", weights_only=True)
    assert one["step"] == two["step"] == 3
    for key, value in one["lora"].items():
        torch.testing.assert_close(two["lora"][key], value, rtol=1e-3, atol=1e-5, msg=key)
    for mine, theirs in zip(one["ema"]["values"], two["ema"]["values"], strict=True):
        torch.testing.assert_close(theirs, mine, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(two["losses"], one["losses"], rtol=1e-4, atol=1e-6)
