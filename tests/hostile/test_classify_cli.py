"""Hostile arguments for every `kubik classify` sub-command: one clear line, exit status 2.

The files are real (digits written as PNG, a classifier trained by the CLI, broken manifests,
checkpoints and weights written as bytes); each case checks the exact message and that nothing
was written where the command refused to work.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from kubik_core.cli import main

TINY_ARGS = ["--arch", "resnet18", "--model-kwargs", '{"channels": [8, 8, 8, 8], "stem_width": 8}',
             "--img-size", "16", "--batch-size", "4", "--workers", "0", "--randaugment", "none",
             "--device", "cpu", "--epochs", "1"]
ALLOWED = "--model-kwargs: {key!r} is not an allowed timm keyword argument (allowed: "


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """Paths of real inputs, good and bad; one tiny classifier trained through the CLI."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("cli")
    digits = load_digits()
    for c in range(3):
        for i in np.flatnonzero(digits.target == c)[:8]:
            path = root / "images" / str(c) / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8), "L").save(path)
    assert main(["classify", "split", str(root / "images"), "--out", str(root / "split"),
                 "--val", "0.25", "--test", "0.1", "--json"]) == 0
    assert main(["classify", "train", "--data", str(root / "split"), "--out", str(root / "run"),
                 *TINY_ARGS, "--json"]) == 0
    (root / "afile").write_text("a file, not a folder")
    (root / "empty").mkdir()
    (root / "zero.png").write_bytes(b"")
    (root / "deep.jsonl").write_text("[" * 3000 + "\n")
    (root / "latin1.csv").write_bytes("path,label\nbild.png,gr\xfcn\n".encode("latin-1"))
    (root / "huge.csv").write_text("path,label\n" + "x" * 200_000 + ",a\n")
    (root / "tab.csv").write_text('path,label\nimages/0/0000.png,"a\tb"\n')
    (root / "junk.pth").write_bytes(b"\x80\x04junk that is not a pickle of tensors")
    (root / "junk.pt").write_bytes(b"PK\x03\x04 a zip header and then nothing")
    (root / "classes-deep.json").write_text("{" * 5000)
    torch.save({"model": {"w": torch.zeros(1)}, "epoch": 0}, root / "not-ours.pt")
    urls = root / "urls"
    urls.mkdir()
    (urls / "classes.json").write_text((root / "split" / "classes.json").read_text())
    (urls / "train.jsonl").write_text("".join(json.dumps({"url": f"http://127.0.0.1:9/{i}.png",
                                                          "label": str(i % 3)}) + "\n" for i in range(8)))
    (urls / "val.jsonl").write_text("")
    (root / "urls.jsonl").write_text((urls / "train.jsonl").read_text())
    for name in ("badval", "badtrain"):
        folder = root / name
        folder.mkdir()
        (folder / "classes.json").write_text((root / "split" / "classes.json").read_text())
        good = (root / "split" / "train.jsonl").read_text()
        broken = "".join(json.dumps({"path": str(root / "zero.png"), "label": str(i)}) + "\n" for i in range(3))
        (folder / "train.jsonl").write_text(broken if name == "badtrain" else
                                            good.replace('"path": "', f'"path": "{root}/split/'))
        (folder / "val.jsonl").write_text(broken)
    os.mkfifo(root / "pipe.jsonl")  # reading a pipe would wait forever
    (root / "busy").mkdir()
    (root / "busy" / "mine.txt").write_text("keep me")
    return root


NO_CUDA = not torch.cuda.is_available()
# (arguments, exact error after "kubik classify: error: "; "..." at the end: a prefix).
CASES = {
    # split
    "split missing source": ("split {r}/missing --out {r}/s1", "dataset not found: {r}/missing"),
    "split empty folder": ("split {r}/empty --out {r}/s1", "dataset {r}/empty contains no images"),
    "split not a manifest": ("split {r}/zero.png --out {r}/s1",
                             "dataset {r}/zero.png: expected a folder, a .csv or a .jsonl manifest"),
    "split deep JSONL": ("split {r}/deep.jsonl --out {r}/s1",
                         "{r}/deep.jsonl line 1: JSON is nested 3000 levels deep (limit 8)"),
    "split latin-1 CSV": ("split {r}/latin1.csv --out {r}/s1",
                          "{r}/latin1.csv: not UTF-8 text (byte 22); save the CSV as UTF-8"),
    "split huge CSV field": ("split {r}/huge.csv --out {r}/s1",
                             "{r}/huge.csv: not a readable CSV (field larger than field limit (131072))"),
    "split tab in a label": ("split {r}/tab.csv --out {r}/s1",
                             "class name 'a\\tb' contains control characters (a line break or tab in a "
                             "label or folder name); rename it"),
    "split out on a file": ("split {r}/images --out {r}/afile", "--out {r}/afile: is a file, not a folder; name a folder"),
    "split out under a file": ("split {r}/images --out {r}/afile/sub",
                               "--out {r}/afile/sub: cannot write there (Not a directory)"),
    "split over a split": ("split {r}/images --out {r}/split",
                           "--out {r}/split: holds an earlier split (train.jsonl, val.jsonl, test.jsonl, "
                           "classes.json, split_report.json); add --overwrite to replace it, or choose "
                           "another folder"),
    "split a pipe": ("split {r}/pipe.jsonl --out {r}/s1",
                     "dataset {r}/pipe.jsonl: not a regular file (a device, pipe or socket)"),
    "split fractions": ("split {r}/images --out {r}/s1 --val 0.7 --test 0.5",
                        "val and test fractions must be in [0, 1) and sum to less than 1"),
    "split max per class": ("split {r}/images --out {r}/s1 --max-per-class 0",
                            "--max-per-class must be at least 1, got 0"),
    # fetch
    "fetch missing manifest": ("fetch {r}/missing.jsonl --cache-dir {r}/c", "dataset not found: {r}/missing.jsonl"),
    "fetch no URLs": ("fetch {r}/split/train.jsonl --cache-dir {r}/c",
                      "{r}/split/train.jsonl: lists no http(s) URLs (local images need no fetch)"),
    "fetch cache on a file": ("fetch {r}/urls.jsonl --cache-dir {r}/afile",
                              "--cache-dir {r}/afile: is a file, not a folder; name a folder"),
    "fetch rate zero": ("fetch {r}/urls.jsonl --cache-dir {r}/c --rate 0",
                        "--rate (requests per second) must be a number from 0.001 to 10000, got 0.0"),
    "fetch negative retries": ("fetch {r}/urls.jsonl --cache-dir {r}/c --retries -1",
                               "--retries must be an integer from 0 to 20, got -1"),
    "fetch NaN timeout": ("fetch {r}/urls.jsonl --cache-dir {r}/c --timeout nan",
                          "--timeout (seconds per request) must be a number from 0.01 to 3600, got nan"),
    "fetch negative cache size": ("fetch {r}/urls.jsonl --cache-dir {r}/c --max-cache-gb -1",
                                  "--max-cache-gb must be a number from 0 to 1e6, got -1.0"),
    # train
    "train missing data": ("train --data {r}/missing --out {r}/t1 {tiny}",
                           "{r}/missing: no classes.json; create the split with `kubik classify split` "
                           "so train and val share one class map"),
    "train out on a file": ("train --data {r}/split --out {r}/afile {tiny}",
                            "--out {r}/afile: is a file, not a folder; name a folder for the run"),
    "train out under a file": ("train --data {r}/split --out {r}/afile/run {tiny}",
                               "--out {r}/afile/run: cannot write there (Not a directory)"),
    "train into an earlier run": ("train --data {r}/split --out {r}/run {tiny}",
                                  "--out {r}/run: holds an earlier run; add --resume to continue it, "
                                  "--overwrite to replace it, or choose another folder"),
    "train into a busy folder": ("train --data {r}/split --out {r}/busy {tiny}",
                                 "--out {r}/busy: holds other files; add --resume to continue it, "
                                 "--overwrite to replace it, or choose another folder"),
    "train resume without a run": ("train --data {r}/split --out {r}/t1 {tiny} --resume",
                                   "--resume: {r}/t1 has no checkpoint.pt to continue from; leave out "
                                   "--resume to start a new run"),
    "train resume and overwrite": ("train --data {r}/split --out {r}/run {tiny} --resume --overwrite",
                                   "--resume continues the run in --out, --overwrite replaces it: give "
                                   "one of them"),
    "train cuda without a GPU": ("train --data {r}/split --out {r}/t1 {tiny} --device cuda",
                                 "--device cuda: no CUDA GPU is available here; use --device cpu (or auto)"),
    "train unknown device": ("train --data {r}/split --out {r}/t1 {tiny} --device tpu",
                             "--device 'tpu' is not a device this command can use (auto, cpu, cuda, "
                             "cuda:N or mps)"),
    "train pretrained junk": ("train --data {r}/split --out {r}/t1 {tiny} --pretrained {r}/junk.pth",
                              "--pretrained junk.pth: not a weights file (.safetensors, or a .pth/.pt "
                              "state dict) (..."),
    "train pretrained zip junk": ("train --data {r}/split --out {r}/t1 {tiny} --pretrained {r}/junk.pt",
                                  "--pretrained junk.pt: not a weights file (.safetensors, or a .pth/.pt "
                                  "state dict) (..."),
    "train pretrained image": ("train --data {r}/split --out {r}/t1 {tiny} --pretrained {r}/zero.png",
                               "--pretrained zero.png: not a weights file (.safetensors, or a .pth/.pt "
                               "state dict) (..."),
    "train pretrained folder": ("train --data {r}/split --out {r}/t1 {tiny} --pretrained {r}/empty",
                                "--pretrained {r}/empty: is a folder, not a weights file"),
    "train pretrained missing": ("train --data {r}/split --out {r}/t1 {tiny} --pretrained {r}/none.pth",
                                 "pretrained weights not found: {r}/none.pth"),
    "train pretrained of another size": ("train --data {r}/split --out {r}/t1 {tiny} --pretrained "
                                         "{r}/run/model.safetensors --model-kwargs "
                                         "{{\"channels\":[16,16,16,16],\"stem_width\":8}}",
                                         "--pretrained model.safetensors: its weights do not fit resnet18 "
                                         "with these model kwargs (Error(s) in loading state_dict for "
                                         "ResNet: size mismatch for layer1.0.conv1.weight: ..."),
    "train kwargs not JSON": ("train --data {r}/split --out {r}/t1 --model-kwargs {{img_size:32}}",
                              "--model-kwargs is not a JSON object (not valid JSON (Expecting property name "
                              "enclosed in double quotes: line 1 column 2 (char 1))), e.g. '{{\"img_size\": 32}}'"),
    "train kwargs a list": ("train --data {r}/split --out {r}/t1 --model-kwargs [32]",
                            "--model-kwargs must be a JSON object of timm keyword arguments, got [32]"),
    "train kwargs deep": ("train --data {r}/split --out {r}/t1 --model-kwargs " + "[" * 50,
                          "--model-kwargs is not a JSON object (JSON is nested 50 levels deep (limit 4)), "
                          "e.g. '{{\"img_size\": 32}}'"),
    "train kwargs NaN": ("train --data {r}/split --out {r}/t1 --model-kwargs {{\"drop_rate\":NaN}}",
                         "--model-kwargs is not a JSON object (NaN is not a JSON number (only finite "
                         "numbers are accepted)), e.g. '{{\"img_size\": 32}}'"),
    "train kwargs checkpoint_path": ("train --data {r}/split --out {r}/t1 --model-kwargs "
                                     "{{\"checkpoint_path\":\"/etc/passwd\"}}",
                                     ALLOWED.format(key="checkpoint_path") + "..."),
    "train kwargs that do not fit": ("train --data {r}/split --out {r}/t1 {tiny} --model-kwargs "
                                     "{{\"depth\":3}}",
                                     "model_kwargs {{\"depth\": 3}} do not fit resnet18 (ResNet.__init__() "
                                     "got an unexpected keyword argument 'depth')"),
    "train hub architecture": ("train --data {r}/split --out {r}/t1 --arch hf-hub:timm/resnet18",
                               "architecture must be a timm model name such as 'resnet18' (letters, "
                               "digits, '_', one optional '.tag'; no 'hf-hub:' prefix, '/' or ':'), got "
                               "'hf-hub:timm/resnet18'"),
    "train unknown randaugment": ("train --data {r}/split --out {r}/t1 --randaugment trivialaugment",
                                  "--randaugment 'trivialaugment': unknown policy 'trivialaugment' (known: "
                                  "rand, augmix, original, originalr, v0, v0r, 3a); e.g. "
                                  "'rand-m9-mstd0.5-inc1', 'augmix-m5-w3', 'original', or 'none'"),
    "train randaugment section": ("train --data {r}/split --out {r}/t1 --randaugment rand-m9-x1",
                                  "--randaugment 'rand-m9-x1': 'x1' is not a section of a 'rand' policy "
                                  "(known: m, n, mstd, mmax, inc, p); e.g. 'rand-m9-mstd0.5-inc1', "
                                  "'augmix-m5-w3', 'original', or 'none'"),
    "train randaugment 100000 ops": ("train --data {r}/split --out {r}/t1 --randaugment rand-n100000",
                                     "--randaugment 'rand-n100000': n must be from 1 to 10, got 100000"),
    "train zero epochs": ("train --data {r}/split --out {r}/t1 --epochs 0",
                          "--epochs must be an integer from 1 to 100000, got 0"),
    "train NaN lr": ("train --data {r}/split --out {r}/t1 --lr nan", "--lr must be a number from 1e-12 to 100, got nan"),
    "train zero batch": ("train --data {r}/split --out {r}/t1 --batch-size 0",
                         "--batch-size must be an integer from 1 to 65536, got 0"),
    "train negative workers": ("train --data {r}/split --out {r}/t1 --workers -1",
                               "--workers must be an integer from 0 to 256, got -1"),
    "train huge img size": ("train --data {r}/split --out {r}/t1 --img-size 100000",
                            "--img-size must be an integer from 8 to 2048, got 100000"),
    "train hflip above 1": ("train --data {r}/split --out {r}/t1 --hflip 2",
                            "--hflip must be a number from 0 to 1, got 2.0"),
    "train scale zero": ("train --data {r}/split --out {r}/t1 --scale-min 0",
                         "--scale-min must be above 0 and at most 1, got 0.0"),
    "train unknown optimizer": ("train --data {r}/split --out {r}/t1 --opt sgdx",
                                "--opt 'sgdx' is not a timm optimizer (e.g. adamw, sgd, lamb, lion)"),
    "train URLs without cache": ("train --data {r}/urls --out {r}/t1 {tiny}",
                                 "train.jsonl lists 8 image URL(s): give --cache-dir, a folder for the "
                                 "downloaded images (`kubik classify fetch --cache-dir` fills it ahead)"),
    "train rate zero": ("train --data {r}/urls --out {r}/t1 {tiny} --cache-dir {r}/c --rate 0",
                        "--rate (requests per second) must be a number from 0.001 to 10000, got 0.0"),
    "train val not loadable": ("train --data {r}/badval --out {r}/t1 {tiny}",
                               "val.jsonl: none of its 3 images could be loaded (e.g. {r}/zero.png: empty "
                               "file (0 bytes)); fix the files (see {r}/t1/skipped.jsonl) or split again"),
    "train nothing loadable": ("train --data {r}/badtrain --out {r}/t1 {tiny}",
                               "train.jsonl: none of its 3 images could be loaded (e.g. {r}/zero.png: empty "
                               "file (0 bytes)); fix the files (see {r}/t1/skipped.jsonl) or split again"),
    # eval
    "eval missing model": ("eval --model {r}/none.safetensors --data {r}/split/test.jsonl",
                           "classifier not found: {r}/none.safetensors"),
    "eval model is a folder": ("eval --model {r}/empty --data {r}/split/test.jsonl",
                               "{r}/empty: is a folder, not a classifier file (.safetensors)"),
    "eval model is an image": ("eval --model {r}/zero.png --data {r}/split/test.jsonl",
                               "{r}/zero.png: not a readable safetensors file (Error while deserializing "
                               "header: header too small)"),
    "eval missing data": ("eval --model {r}/run/model.safetensors --data {r}/none.jsonl",
                          "dataset not found: {r}/none.jsonl"),
    "eval deep class map": ("eval --model {r}/run/model.safetensors --data {r}/split/test.jsonl "
                            "--classes {r}/classes-deep.json",
                            "class map {r}/classes-deep.json: JSON is nested 5000 levels deep (limit 4)"),
    "eval out on a file": ("eval --model {r}/run/model.safetensors --data {r}/split/test.jsonl --out {r}/afile",
                           "--out {r}/afile: is a file, not a folder; name a folder"),
    "eval zero batch": ("eval --model {r}/run/model.safetensors --data {r}/split/test.jsonl --batch-size 0",
                        "--batch-size must be from 1 to 65536, got 0"),
    "eval cuda without a GPU": ("eval --model {r}/run/model.safetensors --data {r}/split/test.jsonl "
                                "--device cuda",
                                "--device cuda: no CUDA GPU is available here; use --device cpu (or auto)"),
    "eval URLs without cache": ("eval --model {r}/run/model.safetensors --data {r}/urls/train.jsonl",
                                "{r}/urls/train.jsonl lists image URLs: give --cache-dir, a folder for the "
                                "downloaded images"),
    "eval nothing loadable": ("eval --model {r}/run/model.safetensors --data {r}/badtrain/val.jsonl",
                              "{r}/badtrain/val.jsonl: none of its 3 images could be loaded (add --out to "
                              "list why)"),
    # export
    "export missing checkpoint": ("export {r}/none.pt --out {r}/e.safetensors", "checkpoint not found: {r}/none.pt"),
    "export folder": ("export {r}/empty --out {r}/e.safetensors",
                      "{r}/empty: is a folder; name the checkpoint.pt of a run"),
    "export junk": ("export {r}/junk.pth --out {r}/e.safetensors",
                    "{r}/junk.pth: not a readable training checkpoint (..."),
    "export another checkpoint": ("export {r}/not-ours.pt --out {r}/e.safetensors",
                                  "{r}/not-ours.pt: not a `kubik classify train` checkpoint"),
    "export without EMA": ("export {r}/run/checkpoint.pt --out {r}/e.safetensors --ema",
                           "--ema: this run was trained without --ema"),
    "export to text": ("export {r}/run/checkpoint.pt --out {r}/e.txt",
                       "--out e.txt: exported classifiers are .safetensors files"),
    "export over a classifier": ("export {r}/run/checkpoint.pt --out {r}/run/model.safetensors",
                                 "--out {r}/run/model.safetensors: exists already; add --overwrite to "
                                 "replace it"),
    "export under a file": ("export {r}/run/checkpoint.pt --out {r}/afile/e.safetensors",
                            "--out {r}/afile/e.safetensors: {r}/afile is a file, not a folder"),
    # predict
    "predict missing model": ("predict {r}/zero.png --model {r}/none.safetensors",
                              "classifier not found: {r}/none.safetensors"),
    "predict with a pipe as model": ("predict {r}/zero.png --model {r}/pipe.jsonl",
                                     "{r}/pipe.jsonl: not a regular file (a device, pipe or socket)"),
    "eval with a pipe as class map": ("eval --model {r}/run/model.safetensors --data {r}/split/test.jsonl "
                                      "--classes {r}/pipe.jsonl",
                                      "class map {r}/pipe.jsonl is not a regular file (a device, pipe or "
                                      "socket)"),
    "predict zero top-k": ("predict {r}/zero.png --model {r}/run/model.safetensors --top-k 0",
                           "--top-k must be at least 1, got 0"),
    "predict threshold": ("predict {r}/zero.png --model {r}/run/model.safetensors --threshold 2",
                          "--threshold must be a score from 0 to 1, got 2.0"),
    "predict cuda without a GPU": ("predict {r}/zero.png --model {r}/run/model.safetensors --device cuda",
                                   "--device cuda: no CUDA GPU is available here; use --device cpu (or auto)"),
    "predict on a meta device": ("predict {r}/zero.png --model {r}/run/model.safetensors --device meta",
                                 "--device 'meta' is not a device this command can use (auto, cpu, cuda, "
                                 "cuda:N or mps)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_arguments(case, ctx, capsys):
    if "cuda" in case and not NO_CUDA:
        pytest.skip("this machine has a GPU")
    template, expected = CASES[case]
    tiny = " ".join(a if " " not in a else a.replace(" ", "") for a in TINY_ARGS)
    argv = ["classify", *template.format(r=ctx, tiny=tiny).split()]
    before = sorted(p.name for p in ctx.iterdir())
    run_files = sorted(p.name for p in (ctx / "run").iterdir())
    assert main(argv) == 2
    captured = capsys.readouterr()
    expected = "kubik classify: error: " + expected.format(r=ctx)
    line = captured.err
    assert line.count("\n") == 1 and "Traceback" not in line, line
    if expected.endswith("..."):
        assert line.startswith(expected[:-3]), line
    else:
        assert line == expected + "\n"
    assert captured.out == ""
    # nothing created or replaced by a refused command (a folder it named stays absent)
    after = sorted(p.name for p in ctx.iterdir())
    created = set(after) - set(before)
    assert created <= {"c", "t1"}, created  # an emptied cache, or a run refused after its checks ...
    if "t1" in created:  # ... which keeps only the list of images it could not load
        assert [p.name for p in (ctx / "t1").iterdir()] == ["skipped.jsonl"]
        (ctx / "t1" / "skipped.jsonl").unlink()
        (ctx / "t1").rmdir()
    assert sorted(p.name for p in (ctx / "run").iterdir()) == run_files


def test_the_real_command_prints_only_its_error_line(ctx):
    """Loading a foreign pickle makes torch warn on stderr; the command's own line is all a
    user sees (in-process, pytest captures warnings apart, so this runs the real `kubik`)."""
    import subprocess
    import sys

    for args in (["export", str(ctx / "junk.pth"), "--out", str(ctx / "x.safetensors")],
                 ["train", "--data", str(ctx / "split"), "--out", str(ctx / "t9"),
                  "--pretrained", str(ctx / "junk.pth")]):
        proc = subprocess.run([sys.executable, "-m", "kubik_core", "classify", *args],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("kubik classify: error: "), proc.stderr
    assert not (ctx / "t9").exists() and not (ctx / "x.safetensors").exists()
