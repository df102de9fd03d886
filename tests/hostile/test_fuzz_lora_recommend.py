"""Fuzz: the LoRA recommender's readers of names, trigger fields and prompts (profile.py,
evidence.py, recommend.py) on arbitrary text: never an exception, evidence within [0, 1], and no
pick below the bar, of a speed LoRA, or of a character the prompt does not name."""
from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from kubik_core.loras import MIN_EVIDENCE, LoraEntry, LoraIndex, recommend
from kubik_core.loras.entry import trigger_words
from kubik_core.loras.profile import naming_triggers, profile_of, split_name
from kubik_core.loras.sidecars import SidecarInfo

WORDS = st.sampled_from(["anime", "style", "1girl", "(oc)", "lora", "xl", "v2", "-", "|", "/", "detail", "watercolor",
                         "nyxvalk", "hair", "lightning", "8steps", "character", "\\(", ")", ",", "ohwx woman", "é"])
TEXT = st.one_of(st.text(max_size=60), st.lists(WORDS, max_size=8).map(" ".join))


@settings(derandomize=True, max_examples=200, deadline=None)
@given(names=st.lists(TEXT, min_size=1, max_size=4), triggers=st.lists(TEXT, max_size=4),
       tags=st.lists(TEXT, max_size=4), poi=st.booleans(), prompt=TEXT)
def test_arbitrary_names_triggers_tags_and_prompts(names, triggers, tags, poi, prompt):
    entries = [LoraEntry(name=f"{n}/{name[:20]}.safetensors", path="", base="sdxl", arch_source="civitai",
                         title=name, triggers=list(triggers), spec_tags=list(tags),
                         sidecar={"model_name": name, "tags": list(tags), "poi": poi, "description": name})
               for n, name in enumerate(names)]
    for entry in entries:
        split_name(entry.title)
        profile = profile_of(entry)
        naming_triggers(entry.triggers, profile.names, profile.qualifiers)
    index = LoraIndex(entries)
    rec = recommend(index, prompt, family="sdxl", max_loras=3)
    evidence = index.evidence.match(prompt).total
    assert ((0 <= evidence) & (evidence <= 1)).all()
    for pick in rec.picks:
        i = index.position[pick.name]
        assert evidence[i] >= MIN_EVIDENCE and index.profiles[i].kind != "speed"
        if index.profiles[i].named_strictly:
            assert index.evidence.match(prompt).lexical[i] >= 0.9
    json.dumps(rec.to_dict())


@settings(derandomize=True, max_examples=200, deadline=None)
@given(field=st.one_of(st.text(max_size=200), st.lists(st.one_of(st.text(max_size=20), st.integers()),
                                                       max_size=5).map(json.dumps)))
def test_trigger_fields_of_any_content(field):
    problems: list[str] = []
    words = trigger_words(SidecarInfo(), {"ss_trigger_words": field, "modelspec.trigger_phrase": field}, problems)
    assert all(isinstance(w, str) and w.strip() == w and w for w in words)
    expected = re.compile(r"(ss_trigger_words|modelspec\.trigger_phrase): .+; trigger words ignored"
                          r"|\d+ trigger words; the first 50 kept|trigger words longer than 200 characters skipped")
    assert all(expected.fullmatch(p) for p in problems), problems
