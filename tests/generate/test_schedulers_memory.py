"""The sampler/scheduler table and the memory strategy choice, without any model."""
from __future__ import annotations

import pytest

from kubik_core.generate.memory import MemoryStrategyError, choose, estimate_strategies
from kubik_core.generate.schedulers import SAMPLERS, diffusers_scheduler, resolve

# diffusers' schedulers warn about numpy 2's copy keyword and log(0) while building sigmas
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::RuntimeWarning")

SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def test_comfyui_pairs_map_to_their_diffusers_twins():
    assert resolve("dpmpp_2m", "karras") == ("DPMSolverMultistepScheduler",
                                             {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                              "use_karras_sigmas": True}, [])
    assert resolve("euler_ancestral", "sgm_uniform") == ("EulerAncestralDiscreteScheduler",
                                                         {"timestep_spacing": "trailing"}, [])
    scheduler, warnings = diffusers_scheduler(SD_SCHEDULE, "dpmpp_2m_sde", "karras")
    assert type(scheduler).__name__ == "DPMSolverMultistepScheduler" and warnings == []
    assert scheduler.config.use_karras_sigmas and scheduler.config.algorithm_type == "sde-dpmsolver++"


def test_samplers_without_a_twin_get_the_nearest_with_a_warning():
    name, _, warnings = resolve("restart", "normal")
    assert name == "EulerDiscreteScheduler"
    assert warnings[0] == ("sampler restart has no diffusers twin; using EulerDiscreteScheduler (euler), "
                           "the nearest")
    assert resolve("seeds_2_ancestral", "karras")[0] == "EulerAncestralDiscreteScheduler"
    assert "no diffusers flag" in resolve("euler", "kl_optimal")[2][0]


def test_every_listed_sampler_builds_and_unsupported_flags_are_said():
    for sampler in SAMPLERS:
        scheduler, warnings = diffusers_scheduler(SD_SCHEDULE, sampler, "karras")
        accepted = "use_karras_sigmas" in scheduler.config
        assert accepted == (not any("has no use_karras_sigmas" in w for w in warnings)), sampler


GB = 2**30
COMPONENTS = {"unet": 5 * GB, "text_encoder": GB // 2, "text_encoder_2": 3 * GB, "vae": GB // 3}


def _estimates(cuda=True):
    return estimate_strategies(COMPONENTS, 250 * 2**20, 1024, 1024, 1, cuda, 10.0)


def test_auto_takes_the_fastest_strategy_that_fits_and_says_why():
    estimates = {e.strategy: e for e in _estimates()}
    assert choose("auto", _estimates(), True, 80 * GB).strategy == "none"
    between = (estimates["balanced"].peak_bytes + estimates["none"].peak_bytes) // 2
    picked = choose("auto", _estimates(), True, int(between / 0.9))
    assert picked.strategy == "balanced" and "fits 90% of the" in picked.reason
    assert choose("auto", _estimates(), True, 1).strategy == "sequential"
    on_cpu = choose("auto", _estimates(cuda=False), False, None)
    assert on_cpu.strategy == "none" and on_cpu.reason.startswith("auto: no CUDA GPU here")


def test_gpu_strategies_are_refused_on_the_cpu():
    with pytest.raises(MemoryStrategyError, match="^--memory balanced needs a CUDA GPU"):
        choose("balanced", _estimates(cuda=False), False, None)
    assert choose("aggressive", _estimates(cuda=False), False, None).strategy == "aggressive"
