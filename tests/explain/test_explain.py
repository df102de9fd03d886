"""explain(): four verbosity levels, analysis provenance, and the sections extension protocol."""
from __future__ import annotations

import socket

import pytest

from kubik_core.explain import VERBOSITIES, explain
from kubik_core.params import optimize
from kubik_core.prompting import OllamaConfig, analyze_prompt


@pytest.fixture(scope="module")
def analysis():
    return analyze_prompt("cinematic photo of a lighthouse in a storm, crashing waves, dramatic lighting")


@pytest.fixture(scope="module")
def plan(analysis):
    return optimize(analysis, "sdxl", mode="ASSISTED", overrides={"steps": 24}, device="rtx4090")


def test_levels_grow_in_detail(analysis, plan):
    texts = {v: explain(analysis, plan, verbosity=v) for v in VERBOSITIES}
    assert "\n" not in texts["minimal"]
    assert len(texts["minimal"]) < len(texts["standard"]) < len(texts["detailed"]) < len(texts["technical"])
    assert "sdxl" in texts["minimal"] and "24 steps" in texts["minimal"]
    assert "Sampling:" in texts["standard"] and "source:" not in texts["standard"]
    # detailed: every decision with its reason
    for decision in plan.decisions:
        if decision.field != "family":
            assert decision.reason in texts["detailed"]
    # technical: sources and raw values
    sources = {decision.source for decision in plan.decisions if decision.source}
    assert sources and all(f"source: {source}" in texts["technical"] for source in sources)
    assert "Optimizer's suggestions: steps" in texts["technical"]
    assert f"vram_gb={plan.estimated_vram_gb}" in texts["technical"]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket closes


def test_says_where_the_analysis_came_from(analysis):
    assert "built-in rules" in explain(analysis, None)
    config = OllamaConfig(url=f"http://127.0.0.1:{_closed_port()}", timeout=2.0)
    fallback = analyze_prompt("a cat", ollama=config)
    assert fallback.source == "rules"
    text = explain(fallback, None, verbosity="standard")
    assert "built-in rules (Ollama not used" in text
    enriched = analyze_prompt("a cat")
    enriched.source = "ollama"
    enriched.notes.append("enriched by Ollama model 'llama3.2'")
    assert "enriched by a local LLM (enriched by Ollama model 'llama3.2')" in explain(enriched, None)


class LoraSection:
    title = "LoRAs"

    def explain(self, verbosity):
        return "2 LoRAs" if verbosity == "minimal" else "detail-xl at 0.6: matches 'highly detailed'"


class EmptySection:
    title = "Nothing"

    def explain(self, verbosity):
        return ""


def test_sections_extend_the_explanation(analysis, plan):
    text = explain(analysis, plan, "standard", sections=[LoraSection(), EmptySection()])
    assert text.endswith("LoRAs\ndetail-xl at 0.6: matches 'highly detailed'") and "Nothing" not in text
    assert explain(analysis, plan, "minimal", sections=[LoraSection()]).endswith(" | 2 LoRAs")


def test_bad_input(analysis):
    with pytest.raises(ValueError, match="^verbosity: unknown level 'verbose'"):
        explain(analysis, None, verbosity="verbose")
    with pytest.raises(TypeError, match="^sections:"):
        explain(analysis, None, sections=["not a section"])
    assert explain().startswith("Nothing to explain")


def test_plan_only_and_fallback_family():
    plan = optimize(None, "generic_flow", device="cpu")
    plan.family_confidence = 0.0
    text = explain(None, plan, "standard")
    assert "could not be recognised" in text and "Prompt:" not in text
