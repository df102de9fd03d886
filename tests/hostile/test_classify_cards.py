"""Hostile classifier files: crafted model cards, timm kwargs and weights, one real file per case.

Each case is a real ``.safetensors`` written by the test (real tensors of a real timm model, a
card in its metadata or beside it) and loaded through the real loader, the CLI or the Load
Classifier node. A crafted card must end in one clear error naming the file, before any large
allocation, network request or read of another file; a fuzzed card may only parse or raise the
parser's own error.
"""
from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from kubik_core.classify.model import (METADATA_KEY, ModelCard, build_model, default_data_config,
                                       export_classifier, load_classifier_model)
from kubik_core.cli import main

TINY = {"channels": [8, 8, 8, 8], "stem_width": 8}
CLASSES = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A real exported classifier: (path, card as a dict, state dict)."""
    model = build_model("resnet18", len(CLASSES), TINY)
    card = ModelCard(architecture="resnet18", classes=CLASSES, model_kwargs=TINY,
                     **default_data_config(model, 32))
    path = export_classifier(model.state_dict(), card, tmp_path_factory.mktemp("good") / "good.safetensors")
    return path, json.loads(card.to_json()), {k: v.contiguous() for k, v in model.state_dict().items()}


def _write(path: Path, tensors: dict, card: dict | str | None) -> Path:
    text = card if isinstance(card, str) or card is None else json.dumps(card)
    save_file(tensors, str(path), metadata=None if text is None else {METADATA_KEY: text})
    return path


def _load_error(path: Path) -> str:
    """The loader's error, with the file's folder cut (cases name the file only)."""
    with pytest.raises(ValueError) as info:
        load_classifier_model(path)
    return str(info.value).replace(f"{path.parent}/", "")


def test_the_good_file_loads(good):
    path, card, state = good
    model, loaded = load_classifier_model(path)
    assert loaded.classes == CLASSES and loaded.model_kwargs == TINY
    torch.testing.assert_close(model.fc.weight, state["fc.weight"])


def test_388_bytes_asking_for_51_gb_is_refused_before_allocating(tmp_path, good):
    """A ViT of 12.9 billion parameters (51 GB of float32) described by a card in a tiny file:
    the meta-device build is compared with the one tensor the file holds, nothing is allocated
    (without the check this test would try to allocate the 51 GB)."""
    card = {"format": "kubik-classifier", "architecture": "vit_base_patch16_224",
            "classes": ["a", "b"], "input_size": [3, 224, 224], "mean": [0.5] * 3, "std": [0.5] * 3,
            "model_kwargs": {"embed_dim": 4096, "depth": 64, "num_heads": 64}}
    path = _write(tmp_path / "bomb.safetensors", {"x": torch.zeros(1)}, card)
    assert path.stat().st_size < 400
    message = _load_error(path)
    assert message.startswith("bomb.safetensors (vit_base_patch16_224, 2 classes): the weights do not "
                              "match the model its config describes (missing ")
    assert message.endswith("unexpected 1 tensor(s): x)")


def test_working_buffers_beyond_the_file_are_refused(tmp_path):
    """A Swin at 2048 px with 1 px patches holds 207 k parameters but would allocate 1.5 billion
    attention-mask values that no file declares (6 GB)."""
    kwargs = {"img_size": 2048, "window_size": 16, "patch_size": 1, "embed_dim": 8,
              "num_heads": [1, 1, 1, 1]}
    with torch.device("meta"):
        probe = build_model("swin_tiny_patch4_window7_224", 2, kwargs)
    tensors = {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in probe.state_dict().items()}
    card = {"format": "kubik-classifier", "architecture": "swin_tiny_patch4_window7_224",
            "classes": ["a", "b"], "input_size": [3, 2048, 2048], "mean": [0.5] * 3,
            "std": [0.5] * 3, "model_kwargs": kwargs}
    path = _write(tmp_path / "masks.safetensors", tensors, card)
    assert _load_error(path) == (
        "masks.safetensors: its model card asks for 1,561,067,520 values of working buffers "
        "(limit 268,435,456); the card was altered or is not for this KubikAI")


ALLOWED_NOTE = "; arguments that name files, URLs, caches, devices or pretrained weights never are"


def _kwarg_refusal(key: str) -> str:
    return f"c.safetensors: model_kwargs: {key!r} is not an allowed timm keyword argument (allowed: "


# (what the crafted card changes, the start of the exact error). Each is a real file.
CARD_CASES = {
    "hf-hub name": ({"architecture": "hf-hub:timm/resnet18"},
                    "c.safetensors: architecture must be a timm model name such as 'resnet18' "
                    "(letters, digits, '_', one optional '.tag'; no 'hf-hub:' prefix, '/' or ':'), "
                    "got 'hf-hub:timm/resnet18'"),
    "hub repo name": ({"architecture": "timm/resnet18.a1_in1k"},
                      "c.safetensors: architecture must be a timm model name such as 'resnet18' "
                      "(letters, digits, '_', one optional '.tag'; no 'hf-hub:' prefix, '/' or "
                      "':'), got 'timm/resnet18.a1_in1k'"),
    "local-dir name": ({"architecture": "local-dir:/etc"}, "c.safetensors: architecture must be"),
    "unknown architecture": ({"architecture": "resnet_nope"},
                             "c.safetensors: unknown timm architecture 'resnet_nope' (similar: "),
    "architecture not a string": ({"architecture": ["resnet18"]},
                                  "c.safetensors: architecture must be a timm model name"),
    "checkpoint_path": ({"model_kwargs": {**TINY, "checkpoint_path": "/etc/passwd"}},
                        _kwarg_refusal("checkpoint_path")),
    "pretrained_cfg": ({"model_kwargs": {"pretrained_cfg": {"url": "http://127.0.0.1:9/w.pth"}}},
                       _kwarg_refusal("pretrained_cfg")),
    "pretrained_cfg_overlay": ({"model_kwargs": {"pretrained_cfg_overlay": {"file": "/etc/passwd"}}},
                               _kwarg_refusal("pretrained_cfg_overlay")),
    "cache_dir": ({"model_kwargs": {"cache_dir": "/tmp"}}, _kwarg_refusal("cache_dir")),
    "pretrained": ({"model_kwargs": {"pretrained": True}}, _kwarg_refusal("pretrained")),
    "device": ({"model_kwargs": {"device": "cuda"}}, _kwarg_refusal("device")),
    "num_classes": ({"model_kwargs": {"num_classes": 10 ** 9}}, _kwarg_refusal("num_classes")),
    "huge channels": ({"model_kwargs": {"channels": [10 ** 6] * 4}},
                      "c.safetensors: model_kwargs.channels must be a list of 1 to 8 integers from "
                      "1 to 4096, got [1000000, 1000000, 1000000, 1000000]"),
    "bool as int": ({"model_kwargs": {"stem_width": True}},
                    "c.safetensors: model_kwargs.stem_width must be an integer from 1 to 1024, got True"),
    "kwargs not an object": ({"model_kwargs": [1, 2]},
                             "c.safetensors: model_kwargs must be a JSON object of timm keyword "
                             "arguments, got [1, 2]"),
    "kwargs that do not fit": ({"model_kwargs": {"depth": 3}},
                               "c.safetensors: model_kwargs {\"depth\": 3} do not fit resnet18 "
                               "(ResNet.__init__() got an unexpected keyword argument 'depth')"),
    "100,001 classes": ({"classes": [f"c{i}" for i in range(100_001)]},
                        "c.safetensors: classes must be a list of 1 to 100000 class names, got "
                        "100001 names"),
    "no classes": ({"classes": []},
                   "c.safetensors: classes must be a list of 1 to 100000 class names, got 0 names"),
    "duplicate classes": ({"classes": ["a", "a", "b"]}, "c.safetensors: classes has duplicate class names"),
    "control characters": ({"classes": ["a\nb", "c", "d"]},
                           "c.safetensors: classes[0] 'a\\nb' contains control characters"),
    "class not a string": ({"classes": [1, 2, 3]},
                           "c.safetensors: classes[0] must be a class name of 1 to 200 characters, got 1"),
    "huge input size": ({"input_size": [3, 100000, 100000]},
                        "c.safetensors: input_size must be [3, height, width] with sides from 8 to "
                        "2048, got [3, 100000, 100000]"),
    "four channels": ({"input_size": [4, 32, 32]}, "c.safetensors: input_size must be [3, height, width]"),
    "zero std": ({"std": [0, 1, 1]},
                 "c.safetensors: std must be 3 numbers (one per RGB channel) from 1e-06 to 10, got [0, 1, 1]"),
    "short mean": ({"mean": [0.5]}, "c.safetensors: mean must be 3 numbers"),
    "interpolation": ({"interpolation": "exec"},
                      "c.safetensors: interpolation must be one of 'bilinear', 'bicubic', 'nearest', "
                      "'lanczos', 'box', 'hamming', got 'exec'"),
    "crop_pct zero": ({"crop_pct": 0}, "c.safetensors: crop_pct must be a number from 0.1 to 2, got 0"),
    "smart_crop string": ({"smart_crop": "yes"}, "c.safetensors: smart_crop must be true or false, got 'yes'"),
    "unknown field": ({"evil": 1}, "c.safetensors: model card has unknown field(s) ['evil'] (known: "),
    "newer version": ({"version": 99},
                      "c.safetensors: classifier format v99 is newer than this KubikAI (v1); update KubikAI"),
    "version as text": ({"version": "1"}, "c.safetensors: version must be a positive integer, got '1'"),
    "other format": ({"format": "other"},
                     "c.safetensors: not a KubikAI classifier (missing 'kubik-classifier' model card)"),
    "wrong fingerprint": ({"classes_sha256": "0" * 64},
                          "c.safetensors: class list does not match its fingerprint (damaged file)"),
    "bad fingerprint": ({"classes_sha256": "$(rm -rf /)"},
                        "c.safetensors: classes_sha256 must be a lowercase hex SHA-256"),
}


@pytest.mark.parametrize("case", sorted(CARD_CASES))
def test_crafted_card(case, tmp_path, good):
    _, card, state = good
    change, expected = CARD_CASES[case]
    crafted = {k: v for k, v in {**card, **change}.items()}
    if "classes" in change or "classes_sha256" not in change:
        crafted.pop("classes_sha256", None)  # keep the fingerprint check out of the other cases
    path = _write(tmp_path / "c.safetensors", state, crafted)
    message = _load_error(path)
    assert message.startswith(expected), message
    assert "\n" not in message


# Raw card text that JSON itself makes hostile (exact bounded_json errors).
TEXT_CASES = {
    "NaN": ('{"format": "kubik-classifier", "mean": [NaN, 0, 0]}',
            "c.safetensors: model card: NaN is not a JSON number (only finite numbers are accepted)"),
    "1e999": ('{"format": "kubik-classifier", "crop_pct": 1e999}',
              "c.safetensors: model card: number 1e999 is out of range (not a finite float)"),
    "deep": ('{"format": "kubik-classifier", "model_kwargs": ' + "[" * 100 + "]" * 100 + "}",
             "c.safetensors: model card: JSON is nested 101 levels deep (limit 8)"),
    "huge int": ('{"format": "kubik-classifier", "version": ' + "9" * 400 + "}",
                 "c.safetensors: model card: number 9999999999999999999999999999999999999999... has 400 "
                 "digits (too large)"),
    "not JSON": ("{", "c.safetensors: model card: not valid JSON (Expecting property name enclosed "
                      "in double quotes: line 1 column 2 (char 1))"),
    "missing fields": ('{"format": "kubik-classifier"}',
                       "c.safetensors: model card lacks architecture, classes, input_size, mean, std"),
}


@pytest.mark.parametrize("case", sorted(TEXT_CASES))
def test_card_text(case, tmp_path, good):
    text, expected = TEXT_CASES[case]
    path = _write(tmp_path / "c.safetensors", good[2], text)
    assert _load_error(path) == expected


def test_weights_that_do_not_match_their_card(tmp_path, good):
    _, card, state = good
    card = {**card, "classes": ["a", "b", "c", "d", "e"]}
    card.pop("classes_sha256")
    path = _write(tmp_path / "c.safetensors", state, card)
    assert _load_error(path) == (
        "c.safetensors (resnet18, 5 classes): 2 tensor(s) have another shape than the config gives "
        "(fc.bias: file [3], config [5])")


def test_nan_weights(tmp_path, good):
    _, card, state = good
    state = {**state, "fc.bias": torch.tensor([0.0, float("nan"), 0.0])}
    path = _write(tmp_path / "c.safetensors", state, card)
    assert _load_error(path) == (
        "c.safetensors: tensor fc.bias holds NaN or infinite values (a damaged or diverged model); "
        "export it again from a good checkpoint")


def test_sidecar_cards_are_bounded_too(tmp_path, good):
    _, card, state = good
    path = _write(tmp_path / "c.safetensors", state, None)  # no embedded card: the .json is read
    (tmp_path / "c.json").write_text(json.dumps({**card, "model_kwargs": {"cache_dir": "/"}}))
    assert _load_error(path).startswith(
        "c.json: model_kwargs: 'cache_dir' is not an allowed timm keyword argument")
    with open(tmp_path / "c.json", "wb") as fh:
        fh.truncate(16 * 1024 * 1024 + 1)
    assert _load_error(path) == (
        "c.json: model card of 16777217 bytes is too large (limit 16777216)")


class _CountingServer:
    """A local server that records every request: loading must send none."""

    def __init__(self):
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.paths.append(self.path)
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_no_card_reaches_the_network_or_another_file(tmp_path, good, monkeypatch):
    server = _CountingServer()
    try:
        for variable in ("HF_ENDPOINT", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(variable, server.url)
        _, card, state = good
        probes = [{"architecture": "hf-hub:timm/resnet18"},
                  {"model_kwargs": {"pretrained_cfg": {"url": f"{server.url}/w.pth", "hf_hub_id": "x/y"}}},
                  {"model_kwargs": {"pretrained_cfg_overlay": {"hf_hub_id": "timm/resnet18",
                                                               "source": "hf-hub"}}},
                  {"model_kwargs": {"checkpoint_path": str(tmp_path / "other.safetensors")}}]
        save_file({"conv1.weight": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
        before = (tmp_path / "other.safetensors").stat().st_atime_ns
        for change in probes:
            path = _write(tmp_path / "c.safetensors", state, {**card, **change})
            with pytest.raises(ValueError, match="architecture must be|not an allowed timm keyword"):
                load_classifier_model(path)
        assert server.paths == []
        assert (tmp_path / "other.safetensors").stat().st_atime_ns == before
    finally:
        server.close()


def test_load_classifier_node_names_the_file_relative_to_its_folder(tmp_path, good, run_node, monkeypatch):
    _, card, state = good
    folder = tmp_path / "classifiers"
    (folder / "team").mkdir(parents=True)
    _write(folder / "team" / "evil.safetensors", state, {**card, "model_kwargs": {"checkpoint_path": "/x"}})
    monkeypatch.setenv("KUBIK_CLASSIFIERS_DIR", str(folder))
    with pytest.raises(ValueError) as info:
        run_node("KubikLoadClassifier", classifier_name="team/evil.safetensors")
    message = str(info.value)
    assert message.startswith("classifier_name: team/evil.safetensors: model_kwargs: 'checkpoint_path' "
                              "is not an allowed timm keyword argument")
    assert message.endswith(ALLOWED_NOTE + "; replace the file with a classifier exported by "
                            "`kubik classify train` or `kubik classify export`")
    assert str(tmp_path) not in message


def test_cli_predict_with_a_crafted_card(tmp_path, good, capsys):
    _, card, state = good
    path = _write(tmp_path / "c.safetensors", state, {**card, "architecture": "hf-hub:x/y"})
    assert main(["classify", "predict", "--model", str(path), str(tmp_path / "any.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kubik classify: error: {path}: architecture must be a timm model name")
    assert err.count("\n") == 1


def test_train_refuses_the_same_kwargs_it_would_refuse_to_load(tmp_path, capsys):
    code = main(["classify", "train", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                 "--model-kwargs", '{"checkpoint_path": "/etc/passwd"}'])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("kubik classify: error: --model-kwargs: 'checkpoint_path' is not an "
                          "allowed timm keyword argument")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------- fuzzing the parser
FUZZ = settings(derandomize=True, max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
scalars = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=20)
FIELDS = ["format", "version", "architecture", "classes", "input_size", "mean", "std",
          "interpolation", "crop_pct", "model_kwargs", "smart_crop", "classes_sha256", "extra"]
KWARGS = ["channels", "stem_width", "img_size", "depth", "embed_dim", "checkpoint_path",
          "pretrained_cfg", "global_pool", "drop_rate", "window_size"]
BASE = {"format": "kubik-classifier", "version": 1, "architecture": "resnet18", "classes": ["a", "b"],
        "input_size": [3, 32, 32], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
        "interpolation": "bicubic", "crop_pct": 1.0, "model_kwargs": {}, "smart_crop": False}
replacements = (values | st.dictionaries(st.sampled_from(KWARGS), values, max_size=3)
                | st.sampled_from([["a", "b"], [3, 32, 32], [0.5, 0.5, 0.5], "resnet18", "hf-hub:a/b",
                                   "timm/resnet18", 1, 1.0, "1e999", {"channels": [8, 8, 8, 8]}]))
cards = st.builds(lambda changes, dropped: {k: v for k, v in {**BASE, **changes}.items() if k not in dropped},
                  st.dictionaries(st.sampled_from(FIELDS), replacements, max_size=3),
                  st.sets(st.sampled_from(FIELDS), max_size=2))
texts = (cards.map(json.dumps) | st.text(max_size=200) | st.binary(max_size=200)
         | st.integers(0, 3000).map(lambda depth: "[" * depth + "]" * depth))


def _finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


@pytest.mark.timeout(60)
@FUZZ
@given(texts)
def test_fuzzed_cards_parse_or_fail_with_one_line(text):
    from kubik_core.classify.schema import CardError, parse_card

    try:
        card = parse_card(text)
    except CardError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert card["format"] == "kubik-classifier" and _finite(card)
    assert set(card["model_kwargs"] if "model_kwargs" in card else {}) <= set(KWARGS) - {
        "checkpoint_path", "pretrained_cfg"}
    assert ":" not in card["architecture"] and "/" not in card["architecture"]
    assert 1 <= len(card["classes"]) <= 100_000
    ModelCard(**card)  # what the parser accepts, the card takes
