"""Kubik Prompt Analyzer, run as ComfyUI runs it (pack loaded from a renamed copy)."""
from __future__ import annotations

import pytest

DEFAULTS = dict(dialect="comfyui", seed=0, wildcards_folder="", use_ollama=False,
                ollama_url="http://127.0.0.1:11434", ollama_model="llama3.2", ollama_timeout=10.0)


def test_outputs_link_into_clip_text_encode(run_node, node_classes):
    cls = node_classes["KubikPromptAnalyzer"]
    assert cls.INPUT_TYPES()["required"]["prompt"][1]["dynamicPrompts"] is False
    analysis, positive, negative, summary = run_node(
        "KubikPromptAnalyzer", prompt="photo of a (red fox:1.2) ,, in a snowy forest",
        **DEFAULTS)
    assert positive == "photo of a (red fox:1.2), in a snowy forest"
    assert analysis.style == "photographic" and analysis.content_type == "animal"
    assert ("red fox", 1.2) in analysis.segments
    assert "cartoon" in negative and "fox" not in negative
    assert summary == analysis.summary and "photographic" in summary


def test_seed_and_wildcards_folder_drive_the_text(run_node, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBIK_WILDCARDS_DIRS", str(tmp_path))  # the allowed wildcard root
    (tmp_path / "animal.txt").write_text("owl\nbear\nlynx\nseal\n", encoding="utf-8")
    inputs = {**DEFAULTS, "wildcards_folder": str(tmp_path)}
    texts = {run_node("KubikPromptAnalyzer", prompt="a {small|big} __animal__",
                      **{**inputs, "seed": seed})[1] for seed in range(20)}
    assert len(texts) > 3 and all("__" not in t for t in texts)
    again = run_node("KubikPromptAnalyzer", prompt="a {small|big} __animal__", **{**inputs, "seed": 4})
    assert again[1] == run_node("KubikPromptAnalyzer", prompt="a {small|big} __animal__",
                                **{**inputs, "seed": 4})[1]


def test_ollama_absent_is_not_an_error(run_node):
    analysis, *_ = run_node("KubikPromptAnalyzer", prompt="a cat",
                            **{**DEFAULTS, "use_ollama": True, "ollama_url": "http://127.0.0.1:9",
                               "ollama_timeout": 1.0})
    assert analysis.source == "rules"
    assert any("Ollama not used" in note for note in analysis.notes)


@pytest.mark.parametrize("changes,message", [
    ({"prompt": "  \n "}, "prompt: the prompt is empty"),
    ({"prompt": "__missing__", "wildcards_folder": "WILD"}, "wildcards_folder: wildcard __missing__ not found"),
    ({"prompt": "__../../etc/passwd__", "wildcards_folder": "WILD"}, "outside the wildcards folder"),
    ({"prompt": "a cat", "dialect": "nai"}, "dialect: unknown prompt dialect 'nai'"),
    ({"prompt": "a cat", "use_ollama": True, "ollama_model": " "}, "ollama_model: empty"),
])
def test_errors_name_the_input(run_node, tmp_path, monkeypatch, changes, message):
    monkeypatch.setenv("KUBIK_WILDCARDS_DIRS", str(tmp_path))
    inputs = {**DEFAULTS, **changes}
    if inputs["wildcards_folder"] == "WILD":
        inputs["wildcards_folder"] = str(tmp_path)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        run_node("KubikPromptAnalyzer", **inputs)


def test_empty_wildcards_folder_uses_comfyuis_models_wildcards(run_node, tmp_path, monkeypatch):
    """Inside ComfyUI an empty wildcards_folder means <models>/wildcards (folder_paths stand-in)."""
    import sys
    import types

    (tmp_path / "models" / "wildcards").mkdir(parents=True)
    (tmp_path / "models" / "wildcards" / "hat.txt").write_text("beret\n", encoding="utf-8")
    stand_in = types.ModuleType("folder_paths")
    stand_in.base_path, stand_in.models_dir = str(tmp_path), str(tmp_path / "models")
    monkeypatch.setitem(sys.modules, "folder_paths", stand_in)
    assert run_node("KubikPromptAnalyzer", prompt="a cat in a __hat__", **DEFAULTS)[1] == \
        "a cat in a beret"
    monkeypatch.delitem(sys.modules, "folder_paths")
    with pytest.raises(ValueError, match="prompt: wildcard __hat__ used but no wildcards folder"):
        run_node("KubikPromptAnalyzer", prompt="a cat in a __hat__", **DEFAULTS)
