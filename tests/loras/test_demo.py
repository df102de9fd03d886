"""The `kubik demo` LoRA section runs offline and reports real picks."""
from __future__ import annotations

import json
import re

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
    # The learning paragraph reports the optimizer's own answer: three edits towards 5-5.5 moved
    # the suggestion that way (how far is params' and learning's business, tested there).
    learned = re.search(r"after three edits of SDXL's CFG from ([\d.]+) to 5-5.5 the optimizer suggests "
                        r"CFG ([\d.]+) \(learned \{'cfg': ([\d.]+)\}\)", text)
    assert learned, text
    default, suggested, learned_cfg = map(float, learned.groups())
    assert 5.0 <= suggested == learned_cfg < default
