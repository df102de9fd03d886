"""Tiny random-weight models for the generate tests: SD1.5- and SDXL-shaped single-file
checkpoints, an SD1.5 ControlNet, and the FLUX.1 and SD3.5 files as ComfyUI users have them.

They are built with ComfyUI's own classes (tests/kubik_testing/tiny_*.py), so these tests
need COMFYUI_DIR (its CLIP tokenizer files too) and skip cleanly without it. Everything runs
offline: HF_HUB_OFFLINE=1 and an empty Hugging Face home for the whole module.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")


def _need_comfyui() -> Path:
    if not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").exists():
        pytest.skip("COMFYUI_DIR is not set to a ComfyUI checkout: the tiny checkpoints cannot be built")
    return Path(COMFYUI_DIR)


@pytest.fixture(scope="session", autouse=True)
def offline(tmp_path_factory):
    """No Hugging Face download can happen: the hub is offline and its cache folder empty."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_HOME")}
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HOME"] = str(tmp_path_factory.mktemp("empty-hf-home"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def tokenizer_dir() -> str:
    return str(_need_comfyui() / "comfy" / "sd1_tokenizer")


@pytest.fixture(scope="session")
def t5_tokenizer_dir() -> str:
    """ComfyUI's T5 tokenizer (tokenizer.json), for FLUX and SD3.5."""
    return str(_need_comfyui() / "comfy" / "text_encoders" / "t5_tokenizer")


@pytest.fixture(scope="session")
def sd15_checkpoint(tmp_path_factory) -> Path:
    from kubik_testing.tiny_checkpoint import build_tiny_sd15_checkpoint

    comfyui = _need_comfyui()
    return build_tiny_sd15_checkpoint(tmp_path_factory.mktemp("sd15") / "tiny_sd15.safetensors", comfyui)


@pytest.fixture(scope="session")
def sdxl_checkpoint(tmp_path_factory) -> Path:
    from kubik_testing.tiny_checkpoint import build_tiny_sdxl_checkpoint

    comfyui = _need_comfyui()
    return build_tiny_sdxl_checkpoint(tmp_path_factory.mktemp("sdxl") / "tiny_sdxl.safetensors", comfyui)


@pytest.fixture(scope="session")
def sd15_controlnet(tmp_path_factory) -> Path:
    from kubik_testing.tiny_controlnet import build_tiny_sd15_controlnet

    comfyui = _need_comfyui()
    return build_tiny_sd15_controlnet(tmp_path_factory.mktemp("controlnet") / "tiny_cn.safetensors", comfyui)


@pytest.fixture(scope="session")
def flux_files(tmp_path_factory) -> dict:
    """The tiny FLUX.1 files (tests/kubik_testing/tiny_flux.py), by kind."""
    from kubik_testing.tiny_flux import build_tiny_flux_files

    return build_tiny_flux_files(tmp_path_factory.mktemp("flux"), _need_comfyui())


@pytest.fixture(scope="session")
def sd3_files(tmp_path_factory) -> dict:
    """The tiny SD3.5 files (tests/kubik_testing/tiny_sd3.py), by kind."""
    from kubik_testing.tiny_sd3 import build_tiny_sd3_files

    return build_tiny_sd3_files(tmp_path_factory.mktemp("sd3"), _need_comfyui())
