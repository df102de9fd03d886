"""kubik params / kubik explain from the command line."""
from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from kubik_core.cli import main


def test_params_json_is_the_documented_interface(capsys):
    assert main(["params", "a knight in shining armor, full body", "--family", "sdxl",
                 "--priority", "quality", "--aspect", "2:3", "--device", "rtx4090", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("family", "steps", "cfg", "sampler_name", "scheduler", "width", "height",
                "estimated_vram_gb", "estimated_seconds", "decisions", "notes"):
        assert key in data
    assert data["family"] == "sdxl" and data["height"] > data["width"] and data["device"] == "rtx4090"


def test_params_text_and_overrides(capsys):
    assert main(["params", "a cat", "--family", "flux_dev", "--mode", "assisted", "--steps", "12"]) == 0
    out = capsys.readouterr().out
    assert "steps      12" in out and "guidance   3.5" in out and "Your values: steps 12" in out


def test_family_auto_from_a_checkpoint_file(tmp_path, capsys):
    path = tmp_path / "my_model.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"modelspec.architecture": "flux-1-schnell"})
    assert main(["params", "a cat", "--family", "auto", "--checkpoint", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["family"] == "flux_schnell"


def test_user_errors_exit_2_with_one_line(capsys):
    assert main(["params", "a cat", "--family", "sdxxl"]) == 2
    err = capsys.readouterr().err
    assert "family: unknown family 'sdxxl'" in err and "Traceback" not in err
    assert main(["params", "a cat", "--aspect", "wide"]) == 2
    assert "aspect_ratio:" in capsys.readouterr().err
    assert main(["params", "a cat", "--family", "auto"]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert main(["params", "   ", "--family", "sdxl"]) == 2


def test_explain_command(capsys):
    assert main(["explain", "a foggy harbor at dawn, oil painting", "--family", "sd15",
                 "--verbosity", "technical"]) == 0
    out = capsys.readouterr().out
    assert "source:" in out and "sd15" in out
