"""estimate(): memory and time respond to the settings the way the documented model says."""
from __future__ import annotations

import pytest

from kubik_core.params import DEVICES, ParamsError, estimate, optimize
from kubik_core.params.devices import profile_for_gpu, resolve_device


def _plan(family="sdxl", **changes):
    plan = optimize(None, family, device="rtx4090")
    for key, value in changes.items():
        setattr(plan, key, value)
    return plan


def test_estimate_matches_the_plan_fields():
    plan = optimize(None, "sdxl", device="rtx3060_12gb")
    assert estimate(plan, "rtx3060_12gb") == (plan.estimated_vram_gb, plan.estimated_seconds)


def test_time_scales_with_steps_pixels_and_cfg():
    base_vram, base_time = estimate(_plan(steps=20), "rtx4090")
    assert estimate(_plan(steps=40), "rtx4090")[1] == pytest.approx(2 * base_time, rel=0.02)
    big_vram, big_time = estimate(_plan(steps=20, width=1536, height=1536), "rtx4090")
    assert big_time == pytest.approx(base_time * 2.25, rel=0.02) and big_vram > base_vram
    assert estimate(_plan(steps=20, cfg=1.0), "rtx4090")[1] == pytest.approx(base_time / 2, rel=0.02)


def test_devices_order_by_throughput():
    plan = _plan()
    times = [estimate(plan, d)[1] for d in ("cpu", "rtx3060_12gb", "rtx4090", "a100_80gb", "h100_80gb")]
    assert times == sorted(times, reverse=True)
    assert estimate(plan, "cpu")[0] > estimate(plan, "rtx4090")[0]  # fp32 on the CPU


def test_model_size_orders_memory():
    sizes = [estimate(_plan(f), "rtx4090")[0] for f in ("sd15", "sdxl", "flux_dev", "flux2")]
    assert sizes == sorted(sizes)
    # plausibility bands, not measurements: SDXL fits a 12 GB card, FLUX.1 dev in fp16 does not
    assert 4 < sizes[1] < 12 and sizes[2] > 20


def test_oversized_plans_get_a_note():
    plan = optimize(None, "flux2", device="rtx3060_12gb")
    assert any("exceeds" in n and "12 GB" in n for n in plan.notes)


def test_device_resolution():
    assert resolve_device("h100_80gb")[0] is DEVICES["h100_80gb"]
    with pytest.raises(ParamsError, match="^device: unknown device 'tpu'"):
        resolve_device("tpu")
    assert profile_for_gpu("NVIDIA GeForce RTX 4090", 24)[0].id == "rtx4090"
    assert profile_for_gpu("NVIDIA H100 80GB HBM3", 80)[0].id == "h100_80gb"
    profile, note = profile_for_gpu("NVIDIA RTX A6000", 48)
    assert profile.id == "a100_80gb" and "A6000" in note


def test_auto_device_is_this_machine():
    import torch

    profile, _note = resolve_device("auto")
    assert (profile.id == "cpu") == (not torch.cuda.is_available())
    assert optimize(None, "sdxl").device == profile.id
