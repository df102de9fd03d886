"""Fuzzing the two parsers the parameter optimizer owns for text it does not control: checkpoint
names and metadata (whatever a file's author wrote, read as words by detect.read_name) and
nvidia-smi's output (devices.parse_nvidia_smi). Whatever they get, they return a reading within
its bounds, never an exception; detection and the plan built on it stay valid."""
from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubik_core.params import FAMILIES, ModelInfo, detect_family, optimize
from kubik_core.params.detect import read_name
from kubik_core.params.devices import parse_nvidia_smi
from kubik_core.params.samplers import KSAMPLER_SAMPLERS, KSAMPLER_SCHEDULERS

FUZZ = settings(derandomize=True, max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
# Name pieces that mean something, mixed with arbitrary text.
PIECES = st.sampled_from(["Lightning", "lightning", "LIGHTNING", "Turbo", "Hyper", "hyper", "LCM", "SDXL", "XL",
                          "4step", "8steps", "1step", "99steps", "0step", "vPred", "v-pred", "V_PREDICTION",
                          "DPMSDE", "euler", "Unet", "fp16", "juggernaut", "pony", "noob", "_", "-", ".", " ",
                          "v9", "\u0663step", "\u00b2", "\x00", "\ud7ff"])
NAMES = st.lists(PIECES | st.text(max_size=12), max_size=12).map("".join) | st.text(max_size=300)


@FUZZ
@given(name=NAMES, metadata=st.dictionaries(st.sampled_from(["modelspec.title", "modelspec.architecture",
                                                             "ss_sd_model_name", "ss_output_name"]),
                                            NAMES, max_size=3),
       model_type=st.sampled_from(["", "EPS", "V_PREDICTION", "EDM", "FLOW"]))
def test_any_checkpoint_name_gives_a_valid_plan(name, metadata, model_type):
    reading = read_name(name)
    assert reading.steps is None or 1 <= reading.steps <= 64
    assert reading.distillation in (None, "lightning", "hyper", "turbo", "lcm")
    assert reading.sampler in (None, *KSAMPLER_SAMPLERS)
    detection = detect_family(ModelInfo(config_class="SDXL", model_class="SDXL", model_type=model_type,
                                        checkpoint_name=name, metadata=metadata))
    assert detection.family in FAMILIES and 0.0 <= detection.confidence <= 1.0
    plan = optimize(None, detection.family, detection=detection, device="rtx4090")
    profile = FAMILIES[plan.family]
    assert plan.sampler_name in KSAMPLER_SAMPLERS and plan.scheduler in KSAMPLER_SCHEDULERS
    assert 1 <= plan.steps <= profile.steps_range[1] and profile.cfg_range[0] <= plan.cfg <= profile.cfg_range[1]


LINES = st.lists(st.tuples(st.text(max_size=20), st.one_of(st.floats(allow_nan=True), st.integers(-10**30, 10**30),
                                                            st.text(max_size=8)),
                           st.text(max_size=40)).map(lambda t: f"{t[0]}, {t[1]}, {t[2]}"), max_size=8)


@FUZZ
@given(lines=LINES | st.lists(st.text(max_size=60), max_size=8),
       visible=st.none() | st.text(max_size=20) | st.sampled_from(["0", "1", "7", "-1", "GPU-", "MIG-x", "\u0663"]))
def test_any_nvidia_smi_output_is_read_or_ignored(lines, visible):
    found = parse_nvidia_smi("\n".join(lines), visible)
    if found is not None:
        name, memory_gb = found
        assert name and len(name) <= 100
        assert math.isfinite(memory_gb) and 0 < memory_gb < 1e5
