"""The `kubik demo` LoRA section runs offline and reports real picks."""
from __future__ import annotations

import json

from kubik_core.loras.demo import recommendations


def test_demo_section(tmp_path):
    text = recommendations(tmp_path)
    records = json.loads((tmp_path / "recommendations.json").read_text())
    assert len(records) == 5
    first = records[0]["recommendation"]["picks"]
    assert first and first[0]["name"] == "sdxl/film_grain_photo_xl.safetensors"
    assert all(p["base"] == "sd1" for p in records[1]["recommendation"]["picks"])
    assert records[4]["recommendation"]["picks"] == []          # no SD3 LoRA in the library
    assert "| 5 | sd35_large | none | - |" in text
    assert "the optimizer suggests CFG 5.17" in text
