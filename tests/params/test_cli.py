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


def test_wildcards_and_seed_resolve_the_prompt_as_kubik_analyze_does(tmp_path, capsys):
    """`kubik params` and `kubik explain` read {a|b} and __name__ like `kubik analyze` (issue 23)."""
    from kubik_core.prompting import analyze_prompt

    (tmp_path / "look.txt").write_text("anime style\noil painting\nprofessional photo\npixel art\n")
    prompt = "a lighthouse on a cliff, __look__, {at sunset|at night}"
    seen = set()
    for seed in range(6):
        analysis = analyze_prompt(prompt, seed=seed, wildcards_dir=tmp_path)
        seen.add(analysis.style)
        assert main(["params", prompt, "--wildcards", str(tmp_path), "--seed", str(seed), "--family", "sdxl",
                     "--device", "rtx4090", "--json"]) == 0
        plan = json.loads(capsys.readouterr().out)
        assert plan["steps"] > 0
        assert main(["explain", prompt, "--wildcards", str(tmp_path), "--seed", str(seed), "--family", "sdxl",
                     "--device", "rtx4090", "--verbosity", "minimal"]) == 0
        line = capsys.readouterr().out
        style = analysis.style.replace("_", " ")
        assert line.startswith(style if analysis.style != "unknown" else ""), (seed, line)
    assert len(seen) > 1                                   # the seed picks different lines


def test_wildcard_errors_are_one_line(tmp_path, capsys):
    assert main(["params", "a __look__ house", "--wildcards", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--wildcards: no folder" in err and "Traceback" not in err
    assert main(["explain", "a __look__ house"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "__look__" in err and "no wildcards folder" in err
