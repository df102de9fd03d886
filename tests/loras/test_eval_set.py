"""The recommender on the whole evaluation set (tests/kubik_testing/lora_eval): the goals of
issue 23, measured the way benchmarks/loras_quality.py measures them."""
from __future__ import annotations

import pytest

from kubik_core.loras import LoraIndex, recommend, scan_library
from kubik_core.loras.recommend import KIND_LABELS
from kubik_core.prompting import analyze_prompt
from kubik_testing.lora_eval import CASES, LIBRARY, build_library, score_cases
from kubik_testing.lora_eval.library import BY_NAME
from kubik_testing.lora_eval.metrics import false_triggers


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    index = LoraIndex(scan_library([build_library(tmp_path_factory.mktemp("eval") / "loras")]))
    recs = {case: recommend(index, analyze_prompt(case.prompt), family=case.family, max_loras=3) for case in CASES}
    return index, recs


def test_the_set_is_what_its_docstring_says():
    assert len(LIBRARY) >= 60 and len(CASES) >= 30
    assert {lora.family for lora in LIBRARY} == {"sd15", "sdxl", "pony", "illustrious", "noobai", "flux"}
    assert {lora.kind for lora in LIBRARY} == {"style", "character", "person", "concept", "clothing", "pose",
                                               "detail", "speed"}
    named = {n for case in CASES for n in [*(x for g in case.want for x in g), *case.ok, *case.wrong]}
    assert named <= set(BY_NAME)
    assert sum(1 for case in CASES if not case.want) >= 10      # prompts where no LoRA fits


@pytest.mark.timeout(120)
def test_goals_of_issue_23(results):
    _index, recs = results
    scores = score_cases({case: [c.name for c in rec.picks] for case, rec in recs.items()})
    failures = [(c.case.prompt, c.picks) for c in scores.failures()]
    assert scores.precision_at_3 >= 0.85, failures
    assert scores.recall_at_3 >= 0.9, failures
    assert scores.unrequested_characters == 0, failures
    assert scores.cross_variant == 0, failures
    assert scores.clashing_stacks == 0, failures


def test_every_trigger_word_of_every_pick_comes_from_a_trigger_field(results):
    _index, recs = results
    wrong = [(c.name, w) for rec in recs.values() for c in rec.picks for w in false_triggers(c.name, c.triggers)]
    assert wrong == []


def test_every_lora_left_out_says_why(results):
    _index, recs = results
    for rec in recs.values():
        assert all(c.reason for c in rec.picks + rec.rejected)
        for c in rec.picks:      # "style (watercolor): trigger 'x' in the prompt; ..."
            assert c.reason.split(":")[0].split(" (")[0] == KIND_LABELS[c.kind]
