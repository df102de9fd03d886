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
    positive, negative, negative_prompt, reasons, _advice = run_node(
        "KubikEmbeddingRecommender", family="sd15", max_negative=2, analysis=analysis)
    assert positive == "embedding:CharTurnerV2"
    assert negative == "embedding:EasyNegative, embedding:badhandv4"
    assert negative_prompt == f"{negative}, {analysis.negative}" and analysis.negative
    assert "- negative embedding:EasyNegative: negative embedding" in reasons


def test_your_negative_text_and_the_model_family(pack, run_node, embeddings_dir, make_model):
    model = make_model(["SDXL", "BaseModel"], "SDXL", {"context_dim": 2048})
    _p, negative, negative_prompt, _r, _a = run_node("KubikEmbeddingRecommender", family="auto", max_negative=1,
                                                 model=model, negative_text="lowres, blurry")
    assert negative == "embedding:unaestheticXLv31" and negative_prompt == f"{negative}, lowres, blurry"


def test_errors_and_an_empty_setup(pack, run_node, embeddings_dir, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="^family: 'auto' needs a MODEL"):
        run_node("KubikEmbeddingRecommender", family="auto", max_negative=2)
    monkeypatch.setenv("KUBIK_EMBEDDINGS_DIR", str(tmp_path / "nothing_here"))
    out = run_node("KubikEmbeddingRecommender", family="sd15", max_negative=2)
    assert out[:3] == ("", "", "") and "not a folder" in out[3]


def test_explain_shows_embedding_and_control_advice(pack, run_node, embeddings_dir):
    """Kubik Explain takes the embedding and control advice beside the analysis: the reasons
    and the sources the advice nodes give appear in its text."""
    analysis = _analysis(pack, "charturnerv2, a knight in armor, photo")
    *_texts, embedding_advice = run_node("KubikEmbeddingRecommender", family="sd15", max_negative=1,
                                         analysis=analysis)
    control_advice = run_node("KubikControlAdvice", control_type="canny", family="sd15",
                              ip_adapter_use="auto", analysis=analysis)[0]
    text = run_node("KubikExplain", verbosity="detailed", analysis=analysis, control_advice=control_advice,
                    embedding_advice=embedding_advice)["result"][0]
    assert f"{embedding_advice.title}\n- positive embedding:CharTurnerV2" in text
    assert "- negative embedding:EasyNegative" in text
    assert control_advice.title in text and control_advice.explain("detailed").strip() in text
