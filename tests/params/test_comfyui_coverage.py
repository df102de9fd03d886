"""Every model class ComfyUI knows is either given a family or knowingly sent to the fallback.

Reads ComfyUI's own source (COMFYUI_DIR) statically with ``ast``, so it needs none of
ComfyUI's dependencies; skipped without a checkout. It catches typos in detect.py's class
tables and new ComfyUI model classes that detection would silently send to the fallback.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from kubik_core.params import detect as detect_module
from kubik_core.params import FAMILIES, ModelInfo, detect_family

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
if not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "comfy" / "supported_models.py").exists():
    pytest.skip("COMFYUI_DIR is not set to a ComfyUI checkout: the class-coverage test is skipped",
                allow_module_level=True)


def _classes(path: Path) -> dict[str, ast.ClassDef]:
    tree = ast.parse(path.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _base_names(node: ast.ClassDef) -> list[str]:
    return [b.attr if isinstance(b, ast.Attribute) else b.id for b in node.bases
            if isinstance(b, (ast.Attribute, ast.Name))]


def _mro(name: str, classes: dict[str, ast.ClassDef]) -> list[str]:
    order, todo = [], [name]
    while todo:
        current = todo.pop(0)
        if current in order:
            continue
        order.append(current)
        if current in classes:
            todo += _base_names(classes[current])
    return order


def _model_class(config: str, configs: dict[str, ast.ClassDef]) -> str:
    """The comfy.model_base class a supported_models config builds in get_model()."""
    for name in _mro(config, configs):
        node = configs.get(name)
        for item in node.body if node else []:
            if isinstance(item, ast.FunctionDef) and item.name == "get_model":
                for call in ast.walk(item):
                    if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                            and isinstance(call.func.value, ast.Name) and call.func.value.id == "model_base"):
                        return call.func.attr
    return "BaseModel"  # supported_models_base.BASE.get_model


@pytest.fixture(scope="module")
def comfy():
    root = Path(COMFYUI_DIR) / "comfy"
    configs = _classes(root / "supported_models.py")
    models_list = next(node for node in ast.parse((root / "supported_models.py").read_text()).body
                       if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "models")
    registered = [elt.id for elt in models_list.value.elts]
    return configs, _classes(root / "model_base.py"), registered


def test_detection_tables_name_real_comfyui_classes(comfy):
    configs, model_classes, _registered = comfy
    assert set(detect_module._CONFIG_CLASSES) <= set(configs)
    assert set(detect_module._MODEL_CLASSES) <= set(model_classes)
    assert set(detect_module._NO_PROFILE) <= set(model_classes) | set(configs)
    assert set(detect_module._CONFIG_CLASSES.values()) <= set(FAMILIES)


def test_every_registered_model_is_detected_or_knowingly_unsupported(comfy):
    configs, model_classes, registered = comfy
    for config in registered:
        model = _model_class(config, configs)
        mro = _mro(model, model_classes)
        info = ModelInfo(config_class=config, model_class=model, model_class_mro=mro,
                         context_dim={"SD15": 768, "SD20": 1024}.get(config))
        detection = detect_family(info)
        if config in detect_module._CONFIG_CLASSES or any(c in detect_module._MODEL_CLASSES for c in mro):
            assert detection.confidence > 0, (config, model, detection)
        else:
            assert any(c in detect_module._NO_PROFILE for c in [config, *mro]), \
                f"ComfyUI's {config} ({model}) is neither mapped to a family nor listed as unsupported"
            assert detection.family == "generic_flow" and detection.confidence == 0.0
