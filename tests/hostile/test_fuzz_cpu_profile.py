"""Fuzzing the cached CPU profile (cpu_profile.json in Kubik's cache folder, which any program of
the user can write): whatever it holds, it is either this machine's valid measurement or ignored
(and measured again), never an error and never a non-finite or non-positive rate."""
from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubik_core.params.devices import CPU_PROFILE_FILE, _read_profile, cpu_identity

FUZZ = settings(derandomize=True, max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
numbers = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8))
profiles = st.fixed_dictionaries({"version": st.sampled_from([1, 2, "1", None]),
                                  "machine": st.sampled_from(["this", "other", None]),
                                  "gflops": numbers, "bandwidth_gbs": numbers,
                                  "measured_at": numbers})


@FUZZ
@given(data=profiles | st.binary(max_size=200))
def test_any_cached_profile_is_valid_or_ignored(tmp_path, data):
    machine = cpu_identity()
    if isinstance(data, dict):
        data = dict(data, machine=machine if data["machine"] == "this" else data["machine"])
        content = json.dumps(data).encode()
    else:
        content = data
    path = tmp_path / CPU_PROFILE_FILE
    path.write_bytes(content)
    found = _read_profile(path, machine)
    if found is not None:
        assert all(math.isfinite(found[k]) and 0 < found[k] < 1e7 for k in ("gflops", "bandwidth_gbs"))
        assert isinstance(found["measured_at"], float) and 0 <= found["measured_at"] < 1e11
