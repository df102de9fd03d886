"""Fixtures the node tests share with their capability's tests: a LoRA library of real files,
ComfyUI-shaped MODEL stand-ins, the prompt analyzer, and the hub's stand-in servers."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kubik_testing.comfy_models import fake_model
from kubik_testing.lora_library import build_library

# hub_fixtures, hub_stand_ins and comfy_stand_ins live beside the hub tests; appended (not
# prepended) so that `conftest` still names the suite's top-level tests/conftest.py.
sys.path.append(str(Path(__file__).resolve().parents[1] / "hub"))
from hub_fixtures import cdn_server, civitai_server, hf_server, hub_env  # noqa: E402,F401 (fixtures)


@pytest.fixture
def library_dir(tmp_path) -> Path:
    return build_library(tmp_path / "loras")


@pytest.fixture(scope="session")
def make_model():
    return fake_model


@pytest.fixture(scope="session")
def analyze():
    from kubik_core.prompting import analyze_prompt
    return analyze_prompt
