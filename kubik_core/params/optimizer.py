"""Choose KSampler settings for a prompt and a model family.

``optimize`` starts from the family's published recommendation for the priority (families.py)
and adjusts it with the prompt analysis:

* steps: the priority's count of the family table. Quality is the count past which the cited
  comparisons show no further gain, so it is never raised; the balanced count moves with the
  analysis' overall complexity (+-20% at the extremes, convention), from the bottom of the
  family's range up to its quality count. Distilled models keep the step count they were
  trained for, or the one their checkpoint name announces ("4step").
* cfg / guidance: photographic styles get a lower CFG (and FLUX guidance), stylised art a bit
  more, within the family's published range (convention). Distilled models stay at CFG 1.
* sampler: anime/illustration styles use the family's anime sampler where it has one; the speed
  priority swaps slow-converging SDE samplers for DPM++ 2M; v-prediction checkpoints take Euler
  instead of an ancestral sampler; a distilled checkpoint whose name announces its sampler
  ("DPMSDE") gets it. A checkpoint with a recipe of its own (families.RECIPES, e.g. Hyper-SDXL's
  one-step UNet) gets that recipe.
* every reason states the value it chose, last; "published" marks only values the family
  table takes from a maker or reference tool (families.is_published).
* size: the family bucket nearest to the aspect ratio asked for, or for "auto" the one the
  prompt suggests (resolution.py).

Modes: AUTO chooses everything and ignores overrides (a note says so); ASSISTED chooses, then
every override given wins and is recorded in ``plan.overrides`` with the optimizer's own choice
in ``plan.suggested`` (a learning store can learn from these edits); MANUAL uses the user's
values as given and family defaults for the rest, with no prompt-driven adjustment.

``learned`` is the hook for a learning engine: ``{field: value or LearnedValue}`` (fields as in
OVERRIDE_FIELDS), applied in AUTO and ASSISTED after the optimizer's own choices and before the
user's overrides. Learned values are used only inside the family's bounds (bounds.py: a minimum
of steps per family and sampler, the published CFG range; a learned size only picks, among the
native sizes of the framing the prompt or your aspect ratio asks for, the one nearest its pixel
count), and each decision's reason says the value without learning, then that it was learned,
from how many edits and what you chose, e.g. "without learning 25; learned from your 3 edits (you
chose 2, at least 15, ...)". Invalid learned values are skipped with a note rather than failing
the run. At the quality and speed priorities a learned step count is used only in the
priority's direction (more steps for quality, fewer for speed): the priority asked for this
run wins over a habit learned from others.

Performance: tables built at import, bucket lookups cached; ~20 us per call. The only I/O is
the first CPU estimate of a process, which reads (or measures, once per machine) the CPU's
profile (devices.py cpu_profile).
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Mapping, Sequence

from .bounds import bounded, native_size
from .detect import FamilyDetection
from .devices import resolve_device
from .errors import ParamsError
from .estimate import estimate_for
from .families import RECIPES, FamilyProfile, get_family, is_published
from .plan import MODES, PRIORITIES, Decision, LearnedValue, SamplingPlan, format_seconds
from .resolution import auto_aspect, nearest_bucket, parse_aspect
from .samplers import KSAMPLER_SAMPLERS, KSAMPLER_SCHEDULERS

OVERRIDE_FIELDS = ("steps", "cfg", "guidance", "sampler_name", "scheduler", "width", "height",
                   "clip_skip")
PHOTO_STYLES = frozenset({"photographic", "cinematic"})
STYLIZED_STYLES = frozenset({"anime", "illustration", "comic", "pixel_art"})
# Stochastic samplers that need more steps to settle; the speed priority avoids them.
_SLOW_SAMPLERS = frozenset({"dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_sde", "dpmpp_sde_gpu",
                            "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "dpmpp_2m_sde_heun",
                            "dpmpp_2m_sde_heun_gpu"})
# Inclusive ranges for numeric overrides; width/height must also be multiples of 8.
_RANGES = {"steps": (1, 200), "cfg": (0.0, 30.0), "guidance": (0.0, 100.0),
           "width": (64, 8192), "height": (64, 8192), "clip_skip": (-24, -1)}
_ANCESTRAL = frozenset({"euler_ancestral", "euler_ancestral_cfg_pp", "dpm_2_ancestral",
                        "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp", "res_multistep_ancestral",
                        "res_multistep_ancestral_cfg_pp"})
_V_PREDICTION = ("community practice for NoobAI-XL v-prediction checkpoints: Euler, not ancestral "
                 "samplers (the illustrious family's note; HF MidnightRunner/MIDNIGHT_NAI-XL_vPredV1: "
                 "'optimized specifically for Euler (normal)', ModelSamplingDiscrete v_prediction)")
# Schedulers that go with a sampler a checkpoint name announces (its makers' pairs).
_HINT_SCHEDULERS = {"dpmpp_sde": "karras", "euler": "sgm_uniform"}
_USER = "your input"
LEARNED_SOURCE = "kubik learning store (your past edits for this family)"


def optimize(analysis: Any = None, family: str = "sdxl", priority: str = "balanced",
             aspect_ratio: str = "auto", mode: str = "AUTO",
             overrides: Mapping[str, Any] | None = None, device: str = "auto",
             learned: Mapping[str, Any] | None = None, detection: FamilyDetection | None = None,
             sampler_choices: Sequence[str] | None = None,
             scheduler_choices: Sequence[str] | None = None, calibrate: bool = True) -> SamplingPlan:
    """A SamplingPlan for ``analysis`` (a PromptAnalysis, or None) on ``family``.

    ``overrides`` / ``learned`` map OVERRIDE_FIELDS to values (None or "auto" = not set).
    ``detection`` (from detect_family) adds its confidence, reason and what the checkpoint's name
    says (steps, sampler, v-prediction, recipe). ``sampler_choices`` / ``scheduler_choices`` are
    the names valid in the running ComfyUI (default: ComfyUI 0.8.0's KSampler lists).
    ``calibrate=False`` never measures the CPU (the command line's default, which must stay
    fast): without a cached CPU profile the plan's estimated_seconds is None, with a note.
    Raises ParamsError naming the bad input.
    """
    profile = get_family(family)
    if priority not in PRIORITIES:
        raise ParamsError(f"priority: unknown priority {priority!r}; choose one of {', '.join(PRIORITIES)}")
    mode = str(mode).upper()
    if mode not in MODES:
        raise ParamsError(f"mode: unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    samplers = sampler_choices or KSAMPLER_SAMPLERS
    schedulers = scheduler_choices or KSAMPLER_SCHEDULERS
    given = validate_overrides(overrides, samplers, schedulers) if overrides else {}
    if "guidance" in given and profile.guidance is None:
        raise ParamsError(f"guidance: family {profile.id!r} takes no distilled guidance; leave "
                          "guidance at 0 (auto) or choose a FLUX-style family")
    device_profile, device_note = resolve_device(device, measure=calibrate)
    notes = list(profile.notes)
    if device_note:
        notes.append(device_note)

    decisions: dict[str, Decision] = {}
    if detection is not None:
        decisions["family"] = Decision("family", profile.id, detection.reason, "kubik family detection")
    if mode == "MANUAL":
        _family_defaults(decisions, profile, aspect_ratio)
    else:
        _choose(decisions, profile, analysis, priority, aspect_ratio, detection, samplers, schedulers, notes)
        if learned:
            _apply_learned(decisions, learned, profile, samplers, schedulers, notes, priority)

    suggested: dict[str, Any] = {}
    if given and mode == "AUTO":
        notes.append(f"AUTO mode ignores the override inputs ({', '.join(given)}): choose ASSISTED "
                     "or MANUAL to use them")
        given = {}
    elif mode == "ASSISTED":
        for name, value in given.items():
            previous = decisions.get(name)
            suggested[name] = previous.value if previous else None
            decisions[name] = Decision(name, value, f"the optimizer suggested {_plain(suggested[name])}; "
                                       f"your override {_plain(value)}", _USER)
    else:
        for name, value in given.items():
            decisions[name] = Decision(name, value, f"your value {_plain(value)} (MANUAL mode)", _USER)

    applied = [d.field for d in decisions.values() if d.source == LEARNED_SOURCE]
    if applied:
        notes.append(f"learned from your edits: {', '.join(applied)} (`kubik insights` lists them; "
                     f"`kubik insights --reset {profile.id}` forgets them)")
    guidance = decisions.get("guidance")
    clip_skip = decisions.get("clip_skip")
    plan = SamplingPlan(
        family=profile.id, steps=decisions["steps"].value, cfg=decisions["cfg"].value,
        sampler_name=decisions["sampler_name"].value, scheduler=decisions["scheduler"].value,
        width=decisions["width"].value, height=decisions["height"].value,
        guidance=guidance.value if guidance is not None else None,
        clip_skip=clip_skip.value if clip_skip is not None else None, priority=priority, mode=mode, device=device_profile.id,
        family_confidence=detection.confidence if detection is not None else 1.0,
        decisions=list(decisions.values()), overrides=given, suggested=suggested, notes=notes)
    plan.estimated_vram_gb, plan.estimated_seconds = _estimate(profile, device_profile, plan, plan.steps)
    if (priority == "quality" and not profile.distilled
            and decisions["steps"].source == profile.steps_source("quality")):
        _quality_cost_note(plan, profile, device_profile)
    _memory_notes(plan, profile, device_profile.memory_gb, priority)
    return plan


def _estimate(profile: FamilyProfile, device, plan: SamplingPlan, steps: int) -> tuple[float, float | None]:
    key = (profile, device, plan.width, plan.height, steps, plan.cfg, plan.priority)
    estimated = _ESTIMATE_CACHE.get(key)
    if estimated is None:
        if len(_ESTIMATE_CACHE) >= _CACHE_LIMIT:
            _ESTIMATE_CACHE.clear()
        estimated = _ESTIMATE_CACHE[key] = estimate_for(
            profile, device, plan.width, plan.height, steps, plan.cfg, plan.priority)
    return estimated


def _quality_cost_note(plan: SamplingPlan, profile: FamilyProfile, device) -> None:
    """What the quality priority costs against balanced, in time, so the choice is informed."""
    balanced = profile.steps["balanced"]
    if plan.steps <= balanced:
        return
    text = (f"quality priority: {plan.steps} steps instead of the balanced {balanced}, "
            f"{plan.steps / balanced:.2g}x the sampling time")
    seconds = _estimate(profile, device, plan, balanced)[1]
    if plan.estimated_seconds is not None and seconds is not None:
        text += (f" (about {format_seconds(plan.estimated_seconds)} per image against "
                 f"{format_seconds(seconds)} on {plan.device})")
    plan.notes.append(text + "; past this count the comparisons in the source show no further gain")


def validate_overrides(values: Mapping[str, Any], samplers: Sequence[str] = KSAMPLER_SAMPLERS,
                       schedulers: Sequence[str] = KSAMPLER_SCHEDULERS, what: str = "override") -> dict[str, Any]:
    """Checked copies of the set values (None / "auto" dropped); ParamsError names the bad one."""
    clean: dict[str, Any] = {}
    for name, value in values.items():
        if value is None or value == "auto":
            continue
        if name not in OVERRIDE_FIELDS:
            raise ParamsError(f"{name}: not a setting the optimizer takes as {what}; valid: "
                              f"{', '.join(OVERRIDE_FIELDS)}")
        if name == "sampler_name" or name == "scheduler":
            choices = samplers if name == "sampler_name" else schedulers
            if value not in choices:
                raise ParamsError(f"{name}: {value!r} is not a KSampler {name.replace('_name', '')}; "
                                  f"valid: {', '.join(choices)}")
            clean[name] = value
            continue
        clean[name] = _checked_number(name, value, what)
    return clean


def _checked_number(name: str, value: Any, what: str) -> int | float:
    integer = name in ("steps", "width", "height", "clip_skip")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamsError(f"{name}: expected a number as {what}, got {value!r}")
    if not math.isfinite(value):
        raise ParamsError(f"{name}: {value!r} is not a finite number")
    if integer and value != int(value):
        raise ParamsError(f"{name}: expected a whole number, got {value!r}")
    low, high = _RANGES[name]
    if not low <= value <= high or (name == "cfg" and value == 0):
        span = f"({low}, {high}]" if name == "cfg" else f"{low}..{high}"
        raise ParamsError(f"{name}: {value!r} is out of range {span}; set a value inside it "
                          "(0 / auto in the node lets the optimizer choose)")
    if name in ("width", "height") and int(value) % 8:
        raise ParamsError(f"{name}: {int(value)} is not a multiple of 8, which the latent "
                          f"needs; try {int(value) // 8 * 8}")
    return int(value) if integer else float(value)


def _choose(decisions: dict[str, Decision], profile: FamilyProfile, analysis: Any,
            priority: str, aspect_ratio: str, detection: FamilyDetection | None,
            samplers: Sequence[str], schedulers: Sequence[str], notes: list[str]) -> None:
    style = analysis.style if analysis is not None else "unknown"
    hint = detection.steps_hint if detection is not None else None
    complexity = analysis.complexity.get("overall") if analysis is not None else None
    if complexity is not None:
        complexity = round(complexity, 2)
    recipe = RECIPES.get(detection.recipe) if detection is not None and detection.recipe else None
    for field_name, value, reason, source in _cached(
            _STEP_CACHE, (profile, priority, hint, complexity), _choose_steps):
        decisions[field_name] = Decision(field_name, value, reason, source)
    style_key = style if style in STYLIZED_STYLES else "photo" if style in PHOTO_STYLES else ""
    sampler_hint = detection.sampler_hint if detection is not None else None
    if sampler_hint not in samplers or _HINT_SCHEDULERS.get(sampler_hint) not in schedulers:
        sampler_hint = None
    v_prediction = bool(detection is not None and detection.v_prediction)
    for field_name, value, reason, source in _cached(
            _STYLE_CACHE, (profile, priority, style_key, sampler_hint, v_prediction), _choose_by_style):
        decisions[field_name] = Decision(field_name, value, reason, source)
    if recipe is not None and recipe.sampler in samplers and recipe.scheduler in schedulers:
        why = f"the {recipe.label} recipe"
        for field_name, value, reason in (
                ("steps", recipe.steps, f"{why}: {recipe.steps}"), ("cfg", recipe.cfg, f"{why}: {recipe.cfg:g}"),
                ("sampler_name", recipe.sampler, f"{why}: {recipe.sampler}"),
                ("scheduler", recipe.scheduler, f"{why}: {recipe.scheduler} with {recipe.sampler}")):
            decisions[field_name] = Decision(field_name, value, reason, recipe.source)
        notes.append(recipe.note)
    if v_prediction:
        notes.append("v-prediction checkpoint: ComfyUI samples it as one when the file says so (a v_pred "
                     "key); otherwise add ModelSamplingDiscrete (v_prediction, zsnr on) before the KSampler")

    if aspect_ratio == "auto":
        if analysis is None:
            aspect, why = "1:1", "no prompt analysis: square 1:1"
        else:
            aspect, why = auto_aspect(analysis.content_type, analysis.cleaned or analysis.prompt)
    else:
        aspect, why = aspect_ratio, f"aspect ratio {aspect_ratio} requested"
    _size(decisions, profile, aspect, why)


# Choices that depend on a few discrete inputs are computed once per key: optimize() runs per
# prompt in batch jobs, and formatting the same reasons again dominated its cost.
_STEP_CACHE: dict[tuple, tuple] = {}
_STYLE_CACHE: dict[tuple, tuple] = {}
_SIZE_CACHE: dict[tuple, tuple] = {}
_ESTIMATE_CACHE: dict[tuple, tuple[float, float | None]] = {}   # user overrides make sizes vary: bounded
_CACHE_LIMIT = 8192


def _cached(cache: dict, key: tuple, compute) -> tuple:
    found = cache.get(key)
    if found is None:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        found = cache[key] = compute(*key)
    return found


def _kind(source: str) -> str:
    """How a reason labels a value from ``source``: published, community practice, convention."""
    if is_published(source):
        return "published"
    return "community practice" if source.lower().startswith("community practice") else "convention"


def _labelled(what: str, value: Any, source: str) -> str:
    """'published CFG 7', or 'usual CFG 7 (convention)' when ``source`` is no maker's figure."""
    kind = _kind(source)
    if kind == "published":
        return f"published {what} {_plain(value)}"
    return f"usual {what} {_plain(value)} ({kind})"


def _choose_steps(profile: FamilyProfile, priority: str, hint: int | None,
                  complexity: float | None) -> tuple:
    steps = profile.steps_for(priority)
    source = profile.steps_source(priority)
    low, high = profile.steps_range
    if profile.distilled:
        if hint and low <= hint <= high:
            return (("steps", hint, f"the checkpoint name says it was distilled for {hint} steps: "
                     f"{hint} steps", f"the checkpoint's name; {profile.sources['steps']}"),)
        return (("steps", steps, f"step-distilled model, {priority} priority: {steps} steps "
                 f"({_kind(source)})", source),)
    reason = f"{priority} priority: {steps} steps ({_kind(source)})"
    if priority == "quality":
        reason += ", past which more steps add time, not quality"
    elif complexity is not None and priority != "speed":
        ceiling = profile.steps["quality"]
        adjusted = min(ceiling, max(low, steps + round((complexity - 0.5) * 0.4 * steps)))
        if adjusted != steps:
            reason += (f"; prompt complexity {complexity:.2f}: {adjusted} steps (convention: detailed "
                       f"scenes need more steps to resolve, simple ones fewer, up to the quality count "
                       f"{ceiling})")
            steps = adjusted
    return (("steps", steps, reason, source),)


def _choose_by_style(profile: FamilyProfile, priority: str, style: str, sampler_hint: str | None,
                     v_prediction: bool) -> tuple:
    """CFG, guidance, sampler, scheduler and clip skip for a style class ("photo", a stylised
    style name, or "" for anything else) and what the checkpoint's name says."""
    sources = profile.sources
    chosen = []
    cfg = profile.cfg
    low, high = profile.cfg_range
    if low == high:
        reason = _labelled("CFG", cfg, sources["cfg"]) + (
            ": this model is distilled or guidance-embedded, so it makes no negative-prompt pass and "
            "a negative prompt has no effect" if cfg == 1.0 else "")
    else:
        reason = _labelled("CFG", cfg, sources["cfg"]) + f" for {profile.label}"
        if style == "photo" and max(low, cfg - 1.0) != cfg:
            cfg = max(low, cfg - 1.0)
            reason += f"; photographic or cinematic style: {cfg:g}, lower keeps skin and light natural (convention)"
        elif style and style != "photo" and min(high, cfg + 0.5) != cfg:
            cfg = min(high, cfg + 0.5)
            reason += f"; stylised art holds slightly higher CFG: {cfg:g} (convention)"
    chosen.append(("cfg", cfg, reason, sources["cfg"]))

    if profile.guidance is not None:
        guidance = profile.guidance
        reason = _labelled("guidance", guidance, sources["guidance"]) + " for ComfyUI's FluxGuidance node"
        if style == "photo":
            guidance -= 0.5
            reason += f"; photographic or cinematic style: {guidance:g}, lower looks less waxy (convention)"
        chosen.append(("guidance", guidance, reason, sources["guidance"]))

    sampler, scheduler = profile.sampler, profile.scheduler
    source = sources["sampler"]
    reason = _labelled("sampler", sampler, source) + f" for {profile.label}"
    scheduler_reason = _labelled("scheduler", scheduler, source) + f" with {sampler} for {profile.label}"
    if profile.distilled:
        if sampler_hint and sampler_hint != sampler:
            sampler, scheduler = sampler_hint, _HINT_SCHEDULERS[sampler_hint]
            reason = f"the checkpoint name announces its sampler: {sampler}"
            scheduler_reason = f"{scheduler} with {sampler}, the pair the checkpoint's makers publish"
            source = f"the checkpoint's name; {sources['sampler']}"
    elif style not in ("", "photo") and profile.stylized_sampler:
        sampler = profile.stylized_sampler
        scheduler = profile.stylized_scheduler or scheduler
        source = sources.get("stylized_sampler", "convention")
        reason = f"{style} style: {sampler}, as anime fine-tunes of this family publish ({_kind(source)})"
        scheduler_reason = f"{style} style: {scheduler} with {sampler}, as those fine-tunes use it ({_kind(source)})"
    elif priority == "speed" and sampler in _SLOW_SAMPLERS:
        sampler = "dpmpp_2m"
        reason = f"speed priority: {sampler}, which settles in fewer steps than SDE samplers (convention)"
        scheduler_reason = f"speed priority: {scheduler} with {sampler}, the usual DPM++ 2M pair (convention)"
        source = "convention"
    if v_prediction and sampler in _ANCESTRAL:
        reason = f"v-prediction checkpoint: euler instead of the ancestral {sampler}"
        sampler, scheduler = "euler", "normal"
        scheduler_reason = f"v-prediction checkpoint: {scheduler} with {sampler} (community practice)"
        source = _V_PREDICTION
    chosen.append(("sampler_name", sampler, reason, source))
    chosen.append(("scheduler", scheduler, scheduler_reason, source))
    if profile.clip_skip is not None:
        clip_source = sources.get("clip_skip", "convention")
        reason = (f"CLIPSetLastLayer {profile.clip_skip}: {_labelled('clip skip', -profile.clip_skip, clip_source)}, "
                  "the prompt read from the text encoder's second-to-last layer instead of its last")
        if profile.group == "sdxl":
            reason += (" (ComfyUI's SDXL text encoders read that layer already, comfy/sdxl_clip.py, so "
                       "the node changes nothing here: A1111-style interfaces need the setting)")
        chosen.append(("clip_skip", profile.clip_skip, reason, clip_source))
    return tuple(chosen)


def _family_defaults(decisions: dict[str, Decision], profile: FamilyProfile, aspect_ratio: str) -> None:
    """MANUAL mode: published balanced defaults, no prompt-driven adjustment."""
    why = "family default (MANUAL mode, not set by you)"
    sources = profile.sources
    for name, value, source in (("steps", profile.steps["balanced"], sources["steps"]),
                                ("cfg", profile.cfg, sources["cfg"]),
                                ("guidance", profile.guidance, sources.get("guidance", "")),
                                ("sampler_name", profile.sampler, sources["sampler"]),
                                ("scheduler", profile.scheduler, sources["sampler"]),
                                ("clip_skip", profile.clip_skip, sources.get("clip_skip", ""))):
        if value is not None:
            decisions[name] = Decision(name, value, f"{why}: {_plain(value)}", source)
    aspect = "1:1" if aspect_ratio == "auto" else aspect_ratio
    _size(decisions, profile, aspect, f"{why}; aspect {aspect}")


def _size(decisions: dict[str, Decision], profile: FamilyProfile, aspect: str, why: str) -> None:
    width, height, reason = _cached(_SIZE_CACHE, (profile, aspect, why), _choose_size)
    source = profile.sources["resolution"]
    decisions["width"] = Decision("width", width, reason, source)
    decisions["height"] = Decision("height", height, reason, source)


def _choose_size(profile: FamilyProfile, aspect: str, why: str) -> tuple:
    width, height = nearest_bucket(profile, parse_aspect(aspect))
    return width, height, f"{why}; nearest native size of {profile.label}: {width}x{height}"


def _apply_learned(decisions: dict[str, Decision], learned: Mapping[str, Any], profile: FamilyProfile,
                   samplers: Sequence[str], schedulers: Sequence[str], notes: list[str],
                   priority: str = "balanced") -> None:
    """Replace the optimizer's choices by the learned values, inside the family's bounds.

    Sampler and scheduler go first, since the sampler sets the minimum of steps; width and
    height are applied together: the native size of the chosen framing nearest the learned
    pixel count.
    """
    items = {name: item if isinstance(item, LearnedValue) else LearnedValue(item)
             for name, item in learned.items()}
    sizes: dict[str, tuple[int, LearnedValue]] = {}
    for name in sorted(items, key=lambda n: n not in ("sampler_name", "scheduler")):
        item = items[name]
        value = item.value
        if name in ("width", "height") and isinstance(value, (int, float)) and math.isfinite(value):
            value = max(64, int(round(value / 8)) * 8)     # snapped to a native size below anyway
        try:
            clean = validate_overrides({name: value}, samplers, schedulers, what="learned value")
        except ParamsError as exc:
            notes.append(f"skipped a learned value: {exc}")
            continue
        if name not in clean or (name == "guidance" and profile.guidance is None):
            continue
        if name in ("width", "height"):
            sizes[name] = (clean[name], item)
            continue
        value, why = bounded(profile, name, clean[name], decisions["sampler_name"].value)
        previous = decisions.get(name)
        if name == "steps" and _against_priority(priority, value, previous.value):
            notes.append(f"learned steps {value} not used: the {priority} priority asks for "
                         f"{'at least' if priority == 'quality' else 'at most'} {previous.value}")
            continue
        decisions[name] = Decision(name, value, _learned_reason(item, why, previous), LEARNED_SOURCE)
    if not sizes:
        return
    # A learned size changes the pixel count, among the native sizes of the framing already
    # chosen (from the prompt or your aspect ratio), never the framing itself.
    chosen_w, chosen_h = decisions["width"].value, decisions["height"].value
    learned_w = sizes["width"][0] if "width" in sizes else chosen_w
    learned_h = sizes["height"][0] if "height" in sizes else chosen_h
    aspect, area = chosen_w / chosen_h, learned_w * learned_h
    native = native_size(profile, math.sqrt(area * aspect), math.sqrt(area / aspect))
    item = (sizes.get("width") or sizes["height"])[1]
    wanted_w = _plain(sizes["width"][1].wanted) if "width" in sizes and sizes["width"][1].wanted else learned_w
    wanted_h = _plain(sizes["height"][1].wanted) if "height" in sizes and sizes["height"][1].wanted else learned_h
    why = (f"you chose {wanted_w}x{wanted_h}, {learned_w}x{learned_h} after the per-edit limit; "
           f"the native size of this framing nearest that pixel count is {native[0]}x{native[1]}")
    for name, value in zip(("width", "height"), native):
        decisions[name] = Decision(name, value, _learned_reason(replace(item, wanted=None), why, decisions[name]),
                                   LEARNED_SOURCE)


def _against_priority(priority: str, learned: int, chosen: int) -> bool:
    """Whether a learned step count works against the priority chosen for this run."""
    return (priority == "quality" and learned < chosen) or (priority == "speed" and learned > chosen)


def _learned_reason(item: LearnedValue, bound: str, previous: Decision | None) -> str:
    """'without learning 25; learned from your 3 edits (you chose 2, at least 15, ...)': the
    learned part last, as explanations quote a reason's last clause."""
    count = f"your {item.edits} edits" if item.edits else "your edits"
    details = []
    if item.wanted is not None and item.wanted != item.value:
        details.append(f"you chose {_plain(item.wanted)}")
    if bound:
        details.append(bound)
    reason = f"learned from {count}" + (f" ({', '.join(details)})" if details else "")
    return f"without learning {_plain(previous.value)}; {reason}" if previous is not None else reason


def _plain(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _memory_notes(plan: SamplingPlan, profile: FamilyProfile, memory_gb: float, priority: str) -> None:
    if priority == "low_vram":
        plan.notes.append("low_vram: load an fp8 checkpoint of this model (the estimate assumes fp8 weights)"
                          if profile.fp8_release else
                          "low_vram: the estimate assumes fp16 weights; ComfyUI's --lowvram offloads "
                          "what does not fit")
    if plan.estimated_vram_gb > memory_gb:
        plan.notes.append(f"estimated peak {plan.estimated_vram_gb:.1f} GB exceeds the "
                          f"{memory_gb:.0f} GB of device {plan.device}: ComfyUI will offload weights "
                          "and run slower")
