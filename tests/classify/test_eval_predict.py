"""`kubik classify eval` and `predict` on a trained digits model; metrics and model files."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from kubik_core.classify.classmap import ClassMap
from kubik_core.classify.data import GlobalBatchSampler
from kubik_core.classify.metrics import compute_metrics
from kubik_core.classify.model import read_card
from kubik_core.cli import main


def test_eval_command_writes_report(trained_run, digits_split, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["classify", "eval", "--model", str(trained_run.model_path), "--data",
                 str(digits_split / "test.jsonl"), "--out", str(out), "--workers", "0", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["count"] == 179 and summary["skipped"] == 0
    assert summary["top1"] >= 0.9 and summary["top5"] >= summary["top1"]
    assert 0 < summary["macro_top1"] <= 1
    assert {p.name for p in out.iterdir()} >= {"metrics.json", "per_class.csv", "confusion.png"}
    rows = (out / "per_class.csv").read_text().splitlines()
    assert rows[0] == "class,support,top1,top5" and len(rows) == 11
    assert Image.open(out / "confusion.png").size[0] > 100


def test_eval_refuses_data_split_with_another_class_map(trained_run, digits_split, tmp_path, capsys):
    other = tmp_path / "split"
    shutil.copytree(digits_split, other)
    ClassMap(tuple(str(d) for d in range(10)) + ("extra",)).save(other / "classes.json")
    assert main(["classify", "eval", "--model", str(trained_run.model_path), "--data",
                 str(other / "test.jsonl"), "--workers", "0"]) == 2
    assert "class map of the data" in capsys.readouterr().err


def test_predict_command_json_and_bad_files(trained_run, digits_dir, tmp_path, capsys):
    seven = sorted((digits_dir / "7").iterdir())[0]
    cmyk = tmp_path / "seven_cmyk.jpg"
    Image.open(seven).convert("CMYK").resize((64, 64)).save(cmyk, quality=95)
    wide = tmp_path / "seven_16bit.png"
    Image.fromarray((np.asarray(Image.open(seven), np.uint16) * 257)).save(wide)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(cmyk.read_bytes()[: cmyk.stat().st_size // 2])
    code = main(["classify", "predict", "--model", str(trained_run.model_path), str(seven), str(cmyk),
                 str(wide), str(corrupt), "--top-k", "3", "--json"])
    results = json.loads(capsys.readouterr().out)
    assert code == 1  # one image failed
    assert [r["image"] for r in results] == [str(seven), str(cmyk), str(wide), str(corrupt)]
    assert results[0]["labels"][0] == "7" and len(results[0]["labels"]) == 3
    assert results[0]["scores"] == sorted(results[0]["scores"], reverse=True)
    assert results[2]["labels"][0] == "7"  # 16-bit is rescaled, not clipped to white
    assert "truncated or corrupt" in results[3]["error"]


def test_predict_threshold_drops_low_scores(trained_run, digits_dir, capsys):
    image = str(sorted((digits_dir / "4").iterdir())[0])
    main(["classify", "predict", "--model", str(trained_run.model_path), image, "--threshold", "0.5",
          "--json"])
    result = json.loads(capsys.readouterr().out)[0]
    assert all(s >= 0.5 for s in result["scores"]) and len(result["labels"]) <= 1


def test_exported_model_card_and_bad_model_files(trained_run, tmp_path, capsys):
    card = json.loads(trained_run.model_path.with_suffix(".json").read_text())
    assert card["format"] == "kubik-classifier" and card["classes"] == [str(d) for d in range(10)]
    assert card["input_size"] == [3, 32, 32] and len(card["mean"]) == 3
    assert read_card(trained_run.model_path).classes_sha256 == card["classes_sha256"]

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(trained_run.model_path.read_bytes()[:1000])
    for path, message in ((plain, "no KubikAI model card"), (truncated, "not a readable safetensors"),
                          (tmp_path / "missing.safetensors", "classifier not found")):
        assert main(["classify", "predict", "--model", str(path), "x.png"]) == 2
        assert message in capsys.readouterr().err


def test_metrics_micro_macro_and_confusions():
    targets = np.array([0, 0, 0, 0, 1, 2])
    topk = np.array([[0, 1], [0, 1], [0, 2], [0, 1], [0, 1], [1, 2]])
    m = compute_metrics(targets, topk, ["a", "b", "c"])
    assert m.top1 == pytest.approx(4 / 6) and m.macro_top1 == pytest.approx(1 / 3)
    assert m.top5 == 1.0 and m.macro_top5 == 1.0
    assert m.most_confused(["a", "b", "c"])[0]["count"] == 1
    with pytest.raises(ValueError, match="no images to evaluate"):
        compute_metrics(np.zeros(0), np.zeros((0, 2)), ["a"])


@pytest.mark.parametrize("weights", [None, torch.tensor([1.0, 1, 1, 5, 5, 5, 5, 5, 9, 9])])
def test_global_batches_do_not_depend_on_world_size(weights):
    one = list(GlobalBatchSampler(10, 4, 0, 1, seed=3, weights=weights))
    ranks = [list(GlobalBatchSampler(10, 4, r, 2, seed=3, weights=weights)) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == one and all(len(b) == 2 for b in ranks[0])
    with pytest.raises(ValueError, match="divisible"):
        GlobalBatchSampler(10, 3, 0, 2)


def test_export_command_from_checkpoint(trained_run, tmp_path, capsys):
    checkpoint = trained_run.out_dir / "checkpoint.pt"
    out = tmp_path / "last.safetensors"
    assert main(["classify", "export", str(checkpoint), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {"model": str(out), "epoch": len(trained_run.history) - 1, "weights": "last"}
    assert read_card(out) == read_card(trained_run.model_path) and out.with_suffix(".json").is_file()

    assert main(["classify", "export", str(checkpoint), "--out", str(tmp_path / "e.safetensors"), "--ema"]) == 2
    assert "trained without --ema" in capsys.readouterr().err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"PK\x03\x04 not a checkpoint")
    assert main(["classify", "export", str(junk), "--out", str(tmp_path / "j.safetensors")]) == 2
    assert "not a readable training checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "j.safetensors").exists()


def test_many_classes_report_most_confused_pairs(tmp_path):
    from kubik_core.classify.evaluate import EvalReport, write_eval_report

    names = [f"species_{i:02d}" for i in range(60)]
    targets = np.repeat(np.arange(60), 3)
    top1 = targets.copy()
    top1[0::3] = (targets[0::3] + 1) % 60          # one image per class mistaken for the next
    top1[1] = 1                                     # species_00 twice as species_01: the top pair
    topk = np.stack([top1, targets, (targets + 2) % 60], axis=1)
    report = EvalReport(compute_metrics(targets, topk, names), loss=1.0, skipped=0)
    summary = write_eval_report(report, ClassMap(tuple(names)), tmp_path)
    assert summary["top1"] == pytest.approx(119 / 180) and summary["top5"] == 1.0
    assert len(summary["most_confused"]) == 20
    assert {"true": "species_00", "predicted": "species_01", "count": 2}.items() <= summary["most_confused"][0].items()
    image = Image.open(tmp_path / "confusion.png")
    assert image.size[0] > 300 and image.size[1] > 200  # the pairs bar chart, not a 60x60 grid
