"""Fixtures for the parameter-optimizer tests.

``make_model`` builds ComfyUI-shaped MODEL stand-ins from class names as ComfyUI 0.8.0 has them
(kubik_testing.comfy_models).
"""
from __future__ import annotations

import importlib

import pytest

from kubik_testing.comfy_models import fake_model


@pytest.fixture(scope="session")
def make_model():
    return fake_model


@pytest.fixture(scope="session")
def bridge(pack):
    """nodes/comfy_bridge.py of the pack as ComfyUI loads it (renamed folder)."""
    return importlib.import_module(f"{pack.__name__}.nodes.comfy_bridge")


@pytest.fixture(scope="session")
def analyze():
    from kubik_core.prompting import analyze_prompt
    return analyze_prompt
