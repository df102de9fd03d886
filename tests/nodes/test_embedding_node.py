"""Kubik Embedding Recommender as ComfyUI runs it (pack loaded from a renamed copy, no ComfyUI)."""
from __future__ import annotations

import importlib

import pytest

from kubik_testing.embedding_files import build_embedding_library


@pytest.fixture
def embeddings_dir(tmp_path, monkeypatch):
    root = build_embedding_library(tmp_path / "embeddings")
    monkeypatch.setenv("KUBIK_EMBEDDINGS_DIR", str(root))
    return root


def _analysis(pack, text):
    return importlib.import_module(f"{pack.__name__}.kubik_core.prompting").analyze_prompt(text)


def test_negative_prompt_for_sd15(pack, run_node, embeddings_dir):
    analysis = _analysis(pack, "charturnerv2, a knight in armor, photo")
    positive, negative, negative_prompt, reasons = run_node(
        "KubikEmbeddingRecommender", family="sd15", max_negative=2, analysis=analysis)
    assert positive == "embedding:CharTurnerV2"
    assert negative == "embedding:EasyNegative, embedding:badhandv4"
    assert negative_prompt == f"{negative}, {analysis.negative}" and analysis.negative
    assert "- negative embedding:EasyNegative: negative embedding" in reasons


def test_your_negative_text_and_the_model_family(pack, run_node, embeddings_dir, make_model):
    model = make_model(["SDXL", "BaseModel"], "SDXL", {"context_dim": 2048})
    _p, negative, negative_prompt, _r = run_node("KubikEmbeddingRecommender", family="auto", max_negative=1,
                                                 model=model, negative_text="lowres, blurry")
    assert negative == "embedding:unaestheticXLv31" and negative_prompt == f"{negative}, lowres, blurry"


def test_errors_and_an_empty_setup(pack, run_node, embeddings_dir, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="^family: 'auto' needs a MODEL"):
        run_node("KubikEmbeddingRecommender", family="auto", max_negative=2)
    monkeypatch.setenv("KUBIK_EMBEDDINGS_DIR", str(tmp_path / "nothing_here"))
    out = run_node("KubikEmbeddingRecommender", family="sd15", max_negative=2)
    assert out[:3] == ("", "", "") and "not a folder" in out[3]
