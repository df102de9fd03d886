"""Fuzz the workflow side of `kubik queue`: whatever a file or a flag holds, the only error is a
WorkflowError (one line for the user), never another exception."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kubik_core.comfy_client.workflow import WorkflowError, expand_jobs, to_api

OBJECT_INFO = {
    "KSampler": {"input": {"required": {
        "model": ["MODEL"], "seed": ["INT", {"default": 0, "min": 0, "max": 2 ** 64 - 1}],
        "steps": ["INT", {"default": 20, "min": 1, "max": 10000}], "cfg": ["FLOAT", {"min": 0.0, "max": 100.0}],
        "sampler_name": [["euler", "dpmpp_2m"]], "denoise": ["FLOAT", {"default": 1.0}]}},
        "input_order": {"required": ["model", "seed", "steps", "cfg", "sampler_name", "denoise"]}},
    "LoadImage": {"input": {"required": {"image": [["a.png"], {"image_upload": True}]}}},
    "Flag": {"input": {"optional": {"on": ["BOOLEAN"], "text": ["STRING", {"multiline": True}]}}},
}
TYPES = st.sampled_from(["KSampler", "KSampler", "LoadImage", "Flag", "Reroute", "PrimitiveNode", "Note", "Other"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 2 ** 70), st.floats(allow_nan=False),
                    st.text(max_size=8))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                      max_leaves=8)
UI_INPUT = st.fixed_dictionaries({"name": st.sampled_from(["model", "seed", "steps", "image", "x"])},
                                 optional={"link": st.one_of(st.none(), st.integers(0, 6), VALUES), "widget": VALUES})
UI_NODE = st.fixed_dictionaries(
    {"id": st.one_of(st.integers(0, 6), st.text(max_size=2)), "type": TYPES},
    optional={"widgets_values": st.one_of(st.lists(SCALARS, max_size=8), VALUES), "inputs": st.lists(UI_INPUT, max_size=3),
              "mode": st.sampled_from([0, 2, 4]), "title": VALUES})
LINK = st.one_of(st.lists(st.one_of(st.integers(0, 6), st.text(max_size=2), VALUES), min_size=5, max_size=6),
                 st.fixed_dictionaries({"id": st.integers(0, 6), "origin_id": st.integers(0, 6), "origin_slot": st.integers(0, 3)}),
                 VALUES)
UI = st.fixed_dictionaries({"nodes": st.lists(st.one_of(UI_NODE, VALUES), max_size=6), "links": st.lists(LINK, max_size=6)})


@settings(derandomize=True, max_examples=200, deadline=None)
@given(UI)
def test_fuzz_ui_conversion(data):
    try:
        api = to_api(data, OBJECT_INFO)
    except WorkflowError:
        return
    assert all(node["class_type"] in OBJECT_INFO for node in api.values())


ASSIGNMENT = st.tuples(st.sampled_from(["1", "Sampler", "KSampler", "", "1.2", "x"]),
                       st.sampled_from(["seed", "steps", "cfg", "sampler_name", "model", "denoise", ""]),
                       st.text(max_size=12)).map(lambda t: f"{t[0]}.{t[1]}={t[2]}") | st.text(max_size=20)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.lists(ASSIGNMENT, max_size=3), st.lists(ASSIGNMENT, max_size=2), st.integers(-1, 3), SCALARS)
def test_fuzz_set_sweep_repeat(sets, sweeps, repeat, seed):
    api = {"1": {"class_type": "KSampler", "inputs": {"model": ["0", 0], "seed": seed, "steps": 2, "cfg": 1.0,
                                                      "sampler_name": "euler", "denoise": 1.0},
                 "_meta": {"title": "Sampler"}}}
    try:
        jobs = expand_jobs(api, OBJECT_INFO, sets, sweeps, repeat)
    except WorkflowError:
        return
    assert len({job.key for job in jobs}) == len(jobs) >= 1
    for job in jobs:
        inputs = job.prompt["1"]["inputs"]
        assert 1 <= inputs["steps"] <= 10000 and inputs["sampler_name"] in ("euler", "dpmpp_2m")
