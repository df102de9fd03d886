"""Model and training configs for the image-to-3D model: data (JSON), not code.

``load_config("tiny")`` reads ``configs/tiny.json`` beside this file; a path to any JSON file with
the same sections works too. Sections: ``vae``, ``image_encoder``, ``flow`` (architecture),
``train_vae``, ``train_flow`` (optimisation), ``sampling`` (inference defaults). A checkpoint's
JSON carries the config it was trained with, so a model file is self-describing.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

CONFIG_DIR = Path(__file__).with_name("configs")
SECTIONS = ("vae", "image_encoder", "flow", "train_vae", "train_flow", "sampling")


def config_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(name_or_path: str | Path | dict, overrides: dict | None = None) -> dict:
    """A config by name (``tiny``, ``base``), by JSON path, or a dict; ``overrides`` are merged
    per section (``{"train_vae": {"steps": 10}}``)."""
    if isinstance(name_or_path, dict):
        config = copy.deepcopy(name_or_path)
    else:
        path = Path(name_or_path)
        if not path.suffix and (CONFIG_DIR / f"{path}.json").is_file():
            path = CONFIG_DIR / f"{path}.json"
        if not path.is_file():
            raise ValueError(f"unknown model config {str(name_or_path)!r}: give one of "
                             f"{', '.join(config_names())} or a JSON file path")
        try:
            config = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"model config {path} is not valid JSON: {exc}") from exc
    missing = [s for s in SECTIONS if not isinstance(config.get(s), dict)]
    if missing:
        raise ValueError(f"model config {config.get('name', name_or_path)!r} lacks the section(s) "
                         f"{', '.join(missing)}")
    for section, values in (overrides or {}).items():
        if section not in SECTIONS:
            raise ValueError(f"unknown config section {section!r}; sections: {', '.join(SECTIONS)}")
        config[section].update(values)
    return config
