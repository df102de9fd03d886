"""Training: accuracy on real digits, long-tail behaviour, resume, early stopping, every option."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from classify_data import DIGIT_AUGMENT, TINY_RESNET, TINY_VIT, long_tailed_indices, write_digits
from kubik_core.classify.classmap import ClassMap, ClassMapMismatch
from kubik_core.classify.data import ManifestDataset
from kubik_core.classify.evaluate import evaluate_dataset
from kubik_core.classify.manifest import Sample, read_dataset, write_jsonl
from kubik_core.classify.model import build_model, read_card
from kubik_core.classify.predict import Classifier
from kubik_core.classify.train import TrainConfig, train


def _config(data, out, **overrides) -> TrainConfig:
    options = dict(architecture="resnet18", model_kwargs=TINY_RESNET, img_size=32, epochs=2,
                   batch_size=32, lr=3e-3, augment=DIGIT_AUGMENT, show_progress=False)
    return TrainConfig(data=str(data), out=str(out), **{**options, **overrides})


def _test_accuracy(model_path, split_dir):
    classifier = Classifier.load(model_path)
    cmap = ClassMap.load(split_dir / "classes.json")
    test = ManifestDataset(read_dataset(split_dir / "test.jsonl"), cmap, classifier.transform())
    return evaluate_dataset(classifier.model, test, cmap, classifier.device).metrics


@pytest.mark.slow
def test_from_scratch_digits_reach_95_percent(trained_run, digits_split):
    metrics = _test_accuracy(trained_run.model_path, digits_split)
    assert metrics.count == 179
    assert metrics.top1 >= 0.95, metrics.summary()
    files = {p.name for p in trained_run.out_dir.iterdir()}
    assert {"checkpoint.pt", "model.safetensors", "model.json", "classes.json", "history.json",
            "curves.png", "train_config.json"} <= files
    assert read_card(trained_run.model_path).class_map == ClassMap.load(digits_split / "classes.json")
    history = json.loads((trained_run.out_dir / "history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_resume_continues_exactly(small_split, tmp_path):
    straight = train(_config(small_split, tmp_path / "straight", epochs=2))
    train(_config(small_split, tmp_path / "resumed", epochs=1))
    resumed = train(_config(small_split, tmp_path / "resumed", epochs=2, resume=True))
    assert [h["epoch"] for h in resumed.history] == [0, 1]
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    assert straight.history[1]["train_loss"] == pytest.approx(resumed.history[1]["train_loss"], rel=1e-4)


def test_resume_refuses_a_checkpoint_with_another_class_map(small_split, tmp_path):
    train(_config(small_split, tmp_path / "run", epochs=1))
    other = tmp_path / "other_split"
    shutil.copytree(small_split, other)
    samples = read_dataset(small_split / "train.jsonl")
    write_jsonl(other / "train.jsonl", [s for s in samples if s.label != "9"])
    write_jsonl(other / "val.jsonl", [s for s in read_dataset(small_split / "val.jsonl") if s.label != "9"])
    ClassMap(tuple(str(d) for d in range(9))).save(other / "classes.json")
    with pytest.raises(ClassMapMismatch, match="classes only in the checkpoint"):
        train(_config(other, tmp_path / "run", epochs=2, resume=True))


def test_early_stopping_on_macro_accuracy(small_split, tmp_path):
    result = train(_config(small_split, tmp_path / "run", epochs=6, lr=1e-9, warmup_epochs=0,
                           patience=2))
    assert result.stopped_early and len(result.history) == 3
    assert result.best["epoch"] == 0


def test_every_option_together_on_a_vit(small_split, tmp_path):
    config = _config(
        small_split, tmp_path / "run", architecture="vit_tiny_patch16_224", model_kwargs=TINY_VIT,
        img_size=None, epochs=2, batch_size=16, grad_accum=2, layer_decay=0.75, drop_path=0.1,
        ema_decay=0.9, mixup=0.2, cutmix=1.0, label_smoothing=0.1, loss="logit_adjusted",
        balanced_sampler=True, amp="bf16", channels_last=True, clip_grad=1.0, smart_crop=True,
        augment={**DIGIT_AUGMENT, "randaugment": "rand-m5-mstd0.5", "random_erasing": 0.25})
    result = train(config)
    assert all(np.isfinite(h["train_loss"]) for h in result.history)
    card = read_card(result.model_path)
    assert card.architecture == "vit_tiny_patch16_224" and card.input_size == [3, 32, 32]
    assert card.smart_crop and card.model_kwargs == TINY_VIT
    from kubik_core.classify.images import load_image
    image = load_image(read_dataset(small_split / "test.jsonl")[0].path)
    prediction = Classifier.load(result.model_path).predict([image], top_k=3)[0]
    assert len(prediction.labels) == 3 and set(prediction.labels) <= set(card.classes)
    from kubik_core.cli import main
    assert main(["classify", "export", str(tmp_path / "run" / "checkpoint.pt"), "--ema",
                 "--out", str(tmp_path / "ema.safetensors")]) == 0
    assert Classifier.load(tmp_path / "ema.safetensors").predict([image])[0].labels
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["layer_decay"] == 0.75 and saved["augment"]["randaugment"] == "rand-m5-mstd0.5"


def test_pretrained_weights_come_from_a_local_file(tmp_path):
    donor = build_model("resnet18", 5, TINY_RESNET)
    path = tmp_path / "donor.safetensors"
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(path))
    model = build_model("resnet18", 10, TINY_RESNET, pretrained_file=path)
    torch.testing.assert_close(model.conv1.weight, donor.conv1.weight)
    assert model.fc.out_features == 10  # new head for the new classes
    with pytest.raises(FileNotFoundError, match="pretrained weights not found"):
        build_model("resnet18", 10, TINY_RESNET, pretrained_file=tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="unknown timm architecture"):
        build_model("resnet_does_not_exist", 10)


def test_bad_training_data(small_split, tmp_path):
    no_map = tmp_path / "no_map"
    shutil.copytree(small_split, no_map)
    (no_map / "classes.json").unlink()
    with pytest.raises(FileNotFoundError, match="no classes.json"):
        train(_config(no_map, tmp_path / "a"))

    broken = tmp_path / "broken"
    shutil.copytree(small_split, broken)
    samples = read_dataset(small_split / "train.jsonl")
    bad = [tmp_path / "zero.png", tmp_path / "junk.png"]
    bad[0].write_bytes(b"")
    bad[1].write_bytes(b"\x89PNG\r\n\x1a\n broken")
    write_jsonl(broken / "train.jsonl", samples + [Sample(str(p), "3") for p in bad])
    write_jsonl(broken / "val.jsonl", read_dataset(small_split / "val.jsonl"))  # re-anchor paths
    result = train(_config(broken, tmp_path / "b", epochs=1))
    skipped = [json.loads(line) for line in (tmp_path / "b" / "skipped.jsonl").read_text().splitlines()]
    assert {Path(row["source"]).name for row in skipped} <= {"zero.png", "junk.png"}
    assert len(result.history) == 1

    write_jsonl(broken / "train.jsonl", samples + [Sample(str(bad[0]), "not-a-digit")])
    with pytest.raises(ClassMapMismatch, match="not in the class map"):
        train(_config(broken, tmp_path / "c"))


@pytest.mark.slow
def test_logit_adjusted_loss_beats_cross_entropy_on_long_tailed_digits(tmp_path):
    """Classes keep 120 down to 3 training images (ratio 40); the test set is balanced."""
    from sklearn.datasets import load_digits

    targets = load_digits().target
    rng = np.random.default_rng(0)
    test_idx = [i for c in range(10) for i in rng.choice(np.flatnonzero(targets == c), 30, replace=False)]
    train_idx = long_tailed_indices(seed=0, exclude=test_idx)
    images = write_digits(tmp_path / "images", train_idx + test_idx)
    test_names = {f"{i:04d}.png" for i in test_idx}
    samples = read_dataset(images)
    split = tmp_path / "split"
    write_jsonl(split / "train.jsonl", [s for s in samples if Path(s.path).name not in test_names])
    write_jsonl(split / "val.jsonl", [s for s in samples if Path(s.path).name in test_names])
    ClassMap.from_labels(s.label for s in samples).save(split / "classes.json")

    macro = {}
    for loss in ("ce", "logit_adjusted"):
        result = train(_config(split, tmp_path / loss, epochs=6, loss=loss, label_smoothing=0.0))
        macro[loss] = result.history[-1]["val_macro_top1"]
    assert macro["logit_adjusted"] >= macro["ce"] + 0.05, macro
