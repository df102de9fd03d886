"""Fuzz: any encoder config.json (and preprocessor_config.json) either loads the tiny DINOv2 beside
it or is refused with one ConsistencyError line; nothing else escapes, nothing large is built."""
from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubik_core.consistency.encoders import load_encoder
from kubik_core.consistency.errors import ConsistencyError
from kubik_testing.tiny_vision import tiny_dinov2

KEYS = ["model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "image_size", "patch_size", "projection_dim", "num_channels", "hidden_act", "layer_norm_eps",
        "vision_config", "mlp_ratio", "use_swiglu_ffn", "qkv_bias", "layerscale_value"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10, 10 ** 12), st.floats(allow_nan=False),
                    st.text(max_size=8), st.sampled_from(["dinov2", "clip", "clip_vision_model", "gelu"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) |
                      st.dictionaries(st.sampled_from(KEYS), inner, max_size=3), max_leaves=6)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tiny_dinov2(tmp_path_factory.mktemp("fuzz") / "dino")
    return folder, json.loads((folder / "config.json").read_text())


@pytest.mark.timeout(120)
@settings(derandomize=True, max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4),
       processor=st.one_of(st.none(), st.dictionaries(
           st.sampled_from(["image_mean", "image_std", "crop_size"]), VALUES, max_size=3)))
def test_any_config_loads_or_is_one_clear_error(weights, tmp_path_factory, changes, processor):
    folder, config = weights
    target = tmp_path_factory.mktemp("case")
    shutil.copy(folder / "model.safetensors", target / "model.safetensors")
    (target / "config.json").write_text(json.dumps({**config, **changes}))
    if processor is not None:
        (target / "preprocessor_config.json").write_text(json.dumps(processor))
    try:
        encoder = load_encoder(target)
    except ConsistencyError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(("case", "model.safetensors"))
    else:
        assert sum(p.numel() for p in encoder.model.parameters()) == 32384   # only what the file holds
