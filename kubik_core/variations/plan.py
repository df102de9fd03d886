"""Plan a batch of variations: up to two axes (X and Y) over base sampling settings.

Each axis varies one thing: the seed; a sampling parameter (steps, CFG, sampler, scheduler,
size); or the LoRAs (``lora``: each LoRA of a stack on its own, e.g. each candidate the
recommender found; ``lora_strength``: the whole stack at several strengths). One axis gives a
row; two different axes ("mixed") give every combination, Y outer and X inner, which is the
order of the contact sheet's cells.

Values arrive as text typed by a user (a node widget, a command-line flag): every value is
checked and every error is one line that starts with the input at fault and says what fits.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any, Sequence

from ..loras.stack import MAX_STRENGTH, LoraStack

MAX_VARIATIONS = 64            # cells of one batch; a 8x8 sheet
MAX_VALUES_TEXT = 4096         # characters of one axis' values
MAX_SEED = 0xFFFFFFFFFFFFFFFF  # KSampler's seed range
MAX_STEPS = 10000
MAX_CFG = 100.0
MIN_SIZE, MAX_SIZE = 16, 16384  # EmptyLatentImage's range, multiples of 8

SEED_AXIS = "seed"
PARAMETER_AXES = ("steps", "cfg", "sampler", "scheduler", "size")
LORA_AXES = ("lora", "lora_strength")
AXES = ("none", SEED_AXIS, *PARAMETER_AXES, *LORA_AXES)
NO_LORA = "none"               # in a ``lora`` axis: the picture without any LoRA

_RANGE = re.compile(r"^\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*$")
_SIZE = re.compile(r"^\s*(\d+)\s*[xX*]\s*(\d+)\s*$")


class VariationError(ValueError):
    """Bad variation input; the message names the input and what fixes it."""


@dataclass(frozen=True)
class BaseSettings:
    """The values every variation starts from (what a plain KSampler run would use)."""
    seed: int = 0
    steps: int = 20
    cfg: float = 7.0
    sampler_name: str = "euler"
    scheduler: str = "normal"
    width: int = 512
    height: int = 512


@dataclass(frozen=True)
class Variation:
    """One picture of the batch: KSampler's and EmptyLatentImage's values plus its LoRA stack."""
    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    width: int
    height: int
    lora_stack: LoraStack = field(default_factory=LoraStack, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "steps": self.steps, "cfg": self.cfg, "sampler_name": self.sampler_name,
                "scheduler": self.scheduler, "width": self.width, "height": self.height,
                "loras": [{"name": i.name, "strength_model": i.strength_model, "strength_clip": i.strength_clip}
                          for i in self.lora_stack.items]}


@dataclass(frozen=True)
class VariationGrid:
    """KUBIK_VARIATION_LABELS: the axes of a batch, for the contact sheet's labels."""
    x_axis: str
    x_labels: tuple[str, ...]
    y_axis: str
    y_labels: tuple[str, ...]

    @property
    def columns(self) -> int:
        return len(self.x_labels)

    @property
    def rows(self) -> int:
        return len(self.y_labels)

    def to_dict(self) -> dict[str, Any]:
        return {"x_axis": self.x_axis, "x_labels": list(self.x_labels),
                "y_axis": self.y_axis, "y_labels": list(self.y_labels)}


@dataclass
class VariationPlan:
    variations: list[Variation]
    grid: VariationGrid
    varied: set[str]   # the Variation fields that differ between cells ("lora_stack" for LoRA axes)

    def __len__(self) -> int:
        return len(self.variations)

    def to_dict(self) -> dict[str, Any]:
        return {"count": len(self.variations), "grid": self.grid.to_dict(),
                "variations": [v.to_dict() for v in self.variations]}


# ------------------------------------------------------------------------------------ checks
def check_base(base: BaseSettings, samplers: Sequence[str], schedulers: Sequence[str]) -> BaseSettings:
    """``base`` when every value is one KSampler / EmptyLatentImage accept; VariationError otherwise."""
    _check_int(base.seed, 0, MAX_SEED, "seed")
    _check_int(base.steps, 1, MAX_STEPS, "steps")
    _check_cfg(base.cfg, "cfg")
    _check_name(base.sampler_name, samplers, "sampler_name", "sampler")
    _check_name(base.scheduler, schedulers, "scheduler", "scheduler")
    _check_side(base.width, "width")
    _check_side(base.height, "height")
    return base


def _check_int(value: Any, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise VariationError(f"{what}: {value!r:.40} is not a whole number from {low} to {high}")
    return value


def _check_cfg(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= MAX_CFG:
        raise VariationError(f"{what}: {value!r:.40} is not a CFG from 0 to {MAX_CFG:g}")
    return float(value)


def _check_side(value: Any, what: str) -> int:
    _check_int(value, MIN_SIZE, MAX_SIZE, what)
    if value % 8:
        raise VariationError(f"{what}: {value} is not a multiple of 8 (latents are 1/8 of the picture)")
    return value


def _check_name(value: Any, known: Sequence[str], what: str, kind: str) -> str:
    if not isinstance(value, str) or value not in known:
        shown = ", ".join(list(known)[:12]) + (", ..." if len(known) > 12 else "")
        raise VariationError(f"{what}: {str(value)[:60]!r} is not a {kind} this ComfyUI has ({shown})")
    return value


# ------------------------------------------------------------------------------------ values
def _items(text: Any, what: str) -> list[str]:
    """The comma-separated entries of an axis' values (empty entries dropped)."""
    if not isinstance(text, str):
        raise VariationError(f"{what}: expected text, found {type(text).__name__}")
    if len(text) > MAX_VALUES_TEXT:
        raise VariationError(f"{what}: {len(text)} characters; give at most {MAX_VARIATIONS} values")
    items = [part.strip() for part in text.replace("\n", ",").replace(";", ",").split(",")]
    return [item for item in items if item]


def _integers(text: str, low: int, high: int, what: str) -> list[int]:
    """Whole numbers, each alone or as an inclusive range ``A..B`` (e.g. seeds ``0..7``)."""
    values: list[int] = []
    for item in _items(text, what):
        span = _RANGE.match(item)
        if span:
            start, end = int(span.group(1)), int(span.group(2))
            if end < start:
                raise VariationError(f"{what}: range {item!r} runs backwards; write it as {end}..{start}")
            if end - start + 1 > MAX_VARIATIONS:
                raise VariationError(f"{what}: range {item!r} holds {end - start + 1} values; at most "
                                     f"{MAX_VARIATIONS} variations fit in one batch")
            numbers = range(start, end + 1)
        else:
            try:
                numbers = [int(item)]
            except ValueError:
                raise VariationError(f"{what}: {item[:40]!r} is not a whole number (write e.g. 1, 2, 3 "
                                     "or 1..4)") from None
        for number in numbers:
            values.append(_check_int(number, low, high, what))
        _check_count(values, what)
    return values


def _floats(text: str, low: float, high: float, what: str) -> list[float]:
    values = []
    for item in _items(text, what):
        try:
            number = float(item)
        except ValueError:
            raise VariationError(f"{what}: {item[:40]!r} is not a number (write e.g. 4, 6.5, 8)") from None
        if not math.isfinite(number) or not low <= number <= high:
            raise VariationError(f"{what}: {item[:40]} is not a number from {low:g} to {high:g}")
        values.append(number)
        _check_count(values, what)
    return values


def _sizes(text: str, what: str) -> list[tuple[int, int]]:
    values = []
    for item in _items(text, what):
        match = _SIZE.match(item)
        if not match:
            raise VariationError(f"{what}: {item[:40]!r} is not a size (write WIDTHxHEIGHT, e.g. 512x768)")
        size = (int(match.group(1)), int(match.group(2)))
        _check_side(size[0], f"{what}: width of {item}")
        _check_side(size[1], f"{what}: height of {item}")
        values.append(size)
        _check_count(values, what)
    return values


def _check_count(values: list, what: str) -> None:
    if len(values) > MAX_VARIATIONS:
        raise VariationError(f"{what}: more than {MAX_VARIATIONS} values; at most {MAX_VARIATIONS} "
                             "variations fit in one batch")


def _label_number(value: float) -> str:
    return f"{value:g}"


def _lora_label(name: str) -> str:
    return PurePosixPath(name.replace("\\", "/")).stem or name


def axis_values(axis: str, text: str, stack: LoraStack | None, samplers: Sequence[str],
                schedulers: Sequence[str], what: str) -> list[tuple[str, dict[str, Any]]]:
    """(label, changes to a Variation) for each value of ``axis``; ``what`` names the input."""
    if axis == SEED_AXIS:
        return [(f"seed {v}", {"seed": v}) for v in _integers(text, 0, MAX_SEED, what)]
    if axis == "steps":
        return [(f"steps {v}", {"steps": v}) for v in _integers(text, 1, MAX_STEPS, what)]
    if axis == "cfg":
        return [(f"cfg {_label_number(v)}", {"cfg": v}) for v in _floats(text, 0.0, MAX_CFG, what)]
    if axis == "sampler":
        names = _items(text, what)
        _check_count(names, what)
        return [(name, {"sampler_name": _check_name(name, samplers, what, "sampler")}) for name in names]
    if axis == "scheduler":
        names = _items(text, what)
        _check_count(names, what)
        return [(name, {"scheduler": _check_name(name, schedulers, what, "scheduler")}) for name in names]
    if axis == "size":
        return [(f"{w}x{h}", {"width": w, "height": h}) for w, h in _sizes(text, what)]
    if axis == "lora":
        return _lora_candidates(text, stack, what)
    if axis == "lora_strength":
        return _lora_strengths(text, stack, what)
    raise VariationError(f"{what}: unknown axis {axis!r}; pick one of {', '.join(AXES)}")


def _need_stack(stack: LoraStack | None, what: str) -> LoraStack:
    if stack is None or not stack.items:
        raise VariationError(f"{what}: a LoRA axis needs LoRAs: connect lora_stack (Kubik LoRA Recommender "
                             "or Kubik LoRA Stack) with at least one LoRA")
    return stack


def _lora_candidates(text: str, stack: LoraStack | None, what: str) -> list[tuple[str, dict[str, Any]]]:
    """Each LoRA of the stack alone, at its own strengths; the values (optional) pick which, by name
    or file stem, and ``none`` adds the picture without LoRA."""
    stack = _need_stack(stack, what)
    wanted = _items(text, what)
    _check_count(wanted, what)
    if not wanted:
        return [(_lora_label(item.name), {"lora_stack": LoraStack([item])}) for item in stack.items]
    by_name = {}
    for item in stack.items:
        by_name.setdefault(item.name.lower(), item)
        by_name.setdefault(_lora_label(item.name).lower(), item)
    cells = []
    for name in wanted:
        if name.lower() == NO_LORA:
            cells.append(("no LoRA", {"lora_stack": LoraStack([])}))
            continue
        item = by_name.get(name.lower())
        if item is None:
            known = ", ".join(_lora_label(i.name) for i in stack.items[:8])
            raise VariationError(f"{what}: {name[:60]!r} is not in the connected stack ({known}); leave the "
                                 "values empty for every LoRA of it, or add 'none' for a picture without")
        cells.append((_lora_label(item.name), {"lora_stack": LoraStack([item])}))
    return cells


def _lora_strengths(text: str, stack: LoraStack | None, what: str) -> list[tuple[str, dict[str, Any]]]:
    """The whole stack with every strength (model and CLIP) multiplied by each value."""
    stack = _need_stack(stack, what)
    cells = []
    for scale in _floats(text, -MAX_STRENGTH, MAX_STRENGTH, what):
        items = []
        for item in stack.items:
            model, clip = item.strength_model * scale, item.strength_clip * scale
            if max(abs(model), abs(clip)) > MAX_STRENGTH:
                raise VariationError(f"{what}: {scale:g} takes {_lora_label(item.name)} to strength "
                                     f"{max(abs(model), abs(clip)):g}, beyond {MAX_STRENGTH:g}")
            items.append(replace(item, strength_model=model, strength_clip=clip))
        cells.append((f"LoRA x{_label_number(scale)}", {"lora_stack": LoraStack(items, list(stack.notes))}))
    if not cells:
        raise VariationError(f"{what}: no strengths given (write e.g. 0, 0.5, 1)")
    return cells


# ------------------------------------------------------------------------------------ plan
def plan_variations(base: BaseSettings, x_axis: str = "none", x_values: str = "", y_axis: str = "none",
                    y_values: str = "", lora_stack: LoraStack | None = None,
                    samplers: Sequence[str] = (), schedulers: Sequence[str] = ()) -> VariationPlan:
    """Every variation of the batch (Y outer, X inner) and the labels of its grid.

    ``samplers`` / ``schedulers`` are the names the ComfyUI at hand lists (any pack's included);
    the base settings are checked against them as well as each value.
    """
    check_base(base, samplers, schedulers)
    for axis, what in ((x_axis, "x_axis"), (y_axis, "y_axis")):
        if axis not in AXES:
            raise VariationError(f"{what}: unknown axis {str(axis)[:40]!r}; pick one of {', '.join(AXES)}")
    if x_axis == "none" and y_axis != "none":
        raise VariationError("x_axis: set the X axis first (y_axis alone is a column; use x_axis for it)")
    if x_axis != "none" and x_axis == y_axis:
        raise VariationError(f"y_axis: {y_axis} is already the X axis; pick another axis, or list every "
                             "value on the X axis")
    if {x_axis, y_axis} == set(LORA_AXES):
        raise VariationError("y_axis: lora and lora_strength together are one sweep; use lora with "
                             "strengths on the stack, or lora_strength alone")
    stack = LoraStack(list(lora_stack.items), list(lora_stack.notes)) if lora_stack is not None else LoraStack()
    start = {"seed": base.seed, "steps": base.steps, "cfg": float(base.cfg), "sampler_name": base.sampler_name,
             "scheduler": base.scheduler, "width": base.width, "height": base.height, "lora_stack": stack}

    def cells(axis: str, text: str, what: str) -> list[tuple[str, dict[str, Any]]]:
        if axis == "none":
            return [("", {})]
        found = axis_values(axis, text, stack, samplers, schedulers, what)
        if not found:
            raise VariationError(f"{what}: no values for the {axis} axis (write e.g. "
                                 f"{_EXAMPLES[axis]})")
        return found

    xs = cells(x_axis, x_values, "x_values")
    ys = cells(y_axis, y_values, "y_values")
    if len(xs) * len(ys) > MAX_VARIATIONS:
        raise VariationError(f"y_values: {len(xs)} x {len(ys)} = {len(xs) * len(ys)} variations; at most "
                             f"{MAX_VARIATIONS} fit in one batch (fewer values, or queue two batches)")
    variations = [Variation(**{**start, **x_changes, **y_changes}) for _, y_changes in ys for _, x_changes in xs]
    varied = {name for _, changes in xs + ys for name in changes}
    grid = VariationGrid(x_axis, tuple(label for label, _ in xs), y_axis, tuple(label for label, _ in ys))
    return VariationPlan(variations, grid, varied)


_EXAMPLES = {"seed": "0..3 or 7, 42", "steps": "10, 20, 30", "cfg": "4, 6, 8", "sampler": "euler, dpmpp_2m",
             "scheduler": "normal, karras", "size": "512x512, 512x768", "lora": "nothing (every LoRA) or 'none'",
             "lora_strength": "0, 0.5, 1"}


# The node's outputs besides the labels, in order: KSampler's, EmptyLatentImage's, the LoRA stack.
OUTPUT_FIELDS = ("seed", "steps", "cfg", "sampler_name", "scheduler", "width", "height", "lora_stack")


def output_lists(plan: VariationPlan) -> dict[str, list]:
    """The node's output lists: one entry per variation for what varies, one entry otherwise.

    ComfyUI runs a node once per entry of its longest input list and repeats the last entry of
    shorter ones, so a value that does not vary reaches every KSampler run from a single
    upstream run: one empty latent, one LoRA application, one text encoding for the batch."""
    lists = {}
    for name in OUTPUT_FIELDS:
        values = [getattr(v, name) for v in plan.variations]
        lists[name] = values if name in plan.varied else values[:1]
    return lists
