"""A small LoRA library of real files (kubik_testing.lora_library): kohya and PEFT layouts for
SD1.5 and SDXL, a FLUX.1 kohya file, real kohya/modelspec metadata, and the sidecars CivitAI
Helper, Lora-Manager and A1111 write."""
from __future__ import annotations

from pathlib import Path

import pytest

from kubik_testing.lora_library import build_library


@pytest.fixture
def library_dir(tmp_path) -> Path:
    return build_library(tmp_path / "loras")
