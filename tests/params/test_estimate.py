"""estimate(): memory and time respond to the settings the way the documented model says."""
from __future__ import annotations

import json

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


# ------------------------------------------------------------------ the CPU: a measured profile
def test_the_cpu_profile_is_measured_once_per_machine_and_cached(tmp_path):
    from kubik_core.params.devices import CPU_PROFILE_FILE, load_cpu_profile

    profile, note = load_cpu_profile(tmp_path)
    saved = json.loads((tmp_path / CPU_PROFILE_FILE).read_text())
    assert saved["gflops"] == pytest.approx(profile.tflops * 1000) and saved["gflops"] > 0
    assert saved["bandwidth_gbs"] == profile.bandwidth_gbs > 0
    assert saved["machine"]["threads"] >= 1 and "GFLOPS" in note and "not loading the checkpoint" in note
    saved["gflops"] = 12345.0                                # read back, not measured again
    (tmp_path / CPU_PROFILE_FILE).write_text(json.dumps(saved))
    assert load_cpu_profile(tmp_path)[0].tflops == pytest.approx(12.345)
    saved["machine"]["cores"] += 1                           # another machine: measured again
    (tmp_path / CPU_PROFILE_FILE).write_text(json.dumps(saved))
    assert load_cpu_profile(tmp_path)[0].tflops != pytest.approx(12.345)


def test_a_day_old_cpu_profile_is_measured_again_keeping_the_faster_figure(tmp_path):
    """Other programs can only slow a measurement down: the faster figure is the machine's."""
    import time

    from kubik_core.params.devices import CPU_PROFILE_FILE, REMEASURE_AFTER_S, load_cpu_profile

    fresh = load_cpu_profile(tmp_path)[0]
    saved = json.loads((tmp_path / CPU_PROFILE_FILE).read_text())
    old = time.time() - REMEASURE_AFTER_S - 60
    (tmp_path / CPU_PROFILE_FILE).write_text(json.dumps({**saved, "gflops": 0.5, "measured_at": old}))
    slow_then = load_cpu_profile(tmp_path)[0]
    assert slow_then.tflops > 0.0005 and json.loads((tmp_path / CPU_PROFILE_FILE).read_text())["measured_at"] > old
    (tmp_path / CPU_PROFILE_FILE).write_text(json.dumps({**saved, "gflops": 1e6, "measured_at": old}))
    assert load_cpu_profile(tmp_path)[0].tflops == 1000.0 and fresh.tflops < 1000.0


@pytest.mark.parametrize("content", [b"[" * 5000, b'{"version": 1, "gflops": NaN}', b"\xff\xfe",
                                     b'{"version": 1, "machine": {}, "gflops": -1, "bandwidth_gbs": 1e400}'])
def test_a_damaged_cpu_profile_is_measured_again(tmp_path, content):
    from kubik_core.params.devices import CPU_PROFILE_FILE, load_cpu_profile

    (tmp_path / CPU_PROFILE_FILE).write_bytes(content)
    profile, _note = load_cpu_profile(tmp_path)
    assert profile.tflops > 0 and json.loads((tmp_path / CPU_PROFILE_FILE).read_text())["version"] == 1


def test_an_unwritable_cache_folder_still_gives_a_profile(tmp_path):
    from kubik_core.params.devices import load_cpu_profile

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert load_cpu_profile(blocker / "kubik")[0].tflops > 0


def test_cpu_time_counts_what_a_cpu_run_spends_time_on():
    """Issue 16: 0.07 s was estimated for a 2-step 64x64 SD1.5 run that took 18 s on a 2-core
    CPU, and 74 s for a 25-step 512x512 one that takes about 25 minutes there. On a CPU like that
    (100 GFLOPS, 10 GB/s), each step reads the 3.4 GB of fp32 weights, and 512x512 costs the
    FLOPs counted on ComfyUI's UNet (0.8 TFLOP per image per step) and its VAE decoder (2.5)."""
    from dataclasses import replace

    from kubik_core.params import FAMILIES, DEVICES
    from kubik_core.params.estimate import time_parts

    cpu = replace(DEVICES["cpu"], tflops=0.1, bandwidth_gbs=10.0)
    small = time_parts(FAMILIES["sd15"], cpu, 64, 64, steps=2, cfg=7.0)
    assert set(small) == {"text", "sampling", "decode"}
    assert small["sampling"] > 2 * 0.86e9 * 4 / 10e9                 # the weights, read every step
    large = sum(time_parts(FAMILIES["sd15"], cpu, 512, 512, steps=25, cfg=7.0).values())
    unet, decode = 25 * 2 * 0.80e12, 2.51e12                         # counted FLOPs (estimate.py)
    assert unet / 0.1e12 + decode / 0.1e12 < large < 3 * (unet + decode) / 0.1e12
    gpu = time_parts(FAMILIES["sd15"], DEVICES["rtx4090"], 512, 512, steps=25, cfg=7.0)
    assert set(gpu) == {"sampling"}                                  # GPUs: sampling only, as before


def test_a_cpu_plan_says_what_its_time_rests_on():
    plan = optimize(None, "sd15", device="cpu")
    assert plan.device == "cpu" and plan.estimated_seconds > 1
    assert any(note.startswith("CPU time estimate from this machine's measured profile") for note in plan.notes)
