"""The classifier section of `kubik demo` runs end to end and reports real numbers."""
from __future__ import annotations

import json
import re

import pytest

from kubik_core.classify.demo import run_demo


@pytest.mark.slow
def test_demo_trains_evaluates_and_predicts(tmp_path):
    calls = []
    markdown = run_demo(tmp_path, progress=lambda done, total: calls.append((done, total)), epochs=2)
    assert calls and calls[-1][0] == calls[-1][1]
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert (tmp_path / "eval" / "confusion.png").is_file()
    accuracy = float(re.search(r"top-1 \*\*([0-9.]+)\*\*", markdown).group(1))
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["top1"], abs=5e-4) and accuracy > 0.3
    assert markdown.count("\n| `") == 6  # six example predictions
    # `kubik demo` into the same folder again replaces its own run instead of refusing it
    assert "Held-out test set" in run_demo(tmp_path, epochs=1)
    assert json.loads((tmp_path / "run" / "history.json").read_text())[-1]["epoch"] == 0
