"""Width and height: aspect ratio parsing and the nearest native resolution bucket.

Models render best at the sizes they were trained on, so the optimizer never invents a size:
it picks, among the family's buckets, the one whose aspect ratio is closest (in log space, so
2:1 and 1:2 are equally far from 1:1) to the requested one, and among equally close buckets
the one nearest the family's native pixel count.
"""
from __future__ import annotations

import math
import re
from functools import lru_cache

from .errors import ParamsError
from .families import FamilyProfile

# Named choices offered by the node's combo; "auto" reads the prompt analysis.
ASPECT_CHOICES = ("auto", "1:1", "4:5", "5:4", "3:4", "4:3", "2:3", "3:2", "9:16", "16:9", "9:21", "21:9")
_MAX_RATIO = 4.0  # beyond 4:1 no family has a bucket worth pretending about

# What content types look best in (aspect ratio, reason). Photography and film conventions:
# head-and-shoulders portraits are framed 3:4, full characters 2:3, vistas wide.
CONTENT_ASPECT = {
    "portrait": ("3:4", "portrait framing (head and shoulders) suits a tall 3:4 frame"),
    "character": ("2:3", "a full character fits a tall 2:3 frame"),
    "group": ("4:3", "several subjects side by side need a wider 4:3 frame"),
    "landscape": ("16:9", "landscapes read best in a wide 16:9 frame"),
    "cityscape": ("16:9", "cityscapes read best in a wide 16:9 frame"),
    "architecture": ("3:4", "buildings are usually framed tall (3:4)"),
    "interior": ("4:3", "interiors are framed 4:3 like real-estate photography"),
    "vehicle": ("3:2", "vehicles are long: a 3:2 frame"),
    "scene": ("3:2", "a scene with several elements gets a 3:2 frame"),
}
# Words in the prompt that override the content type's frame (whole words, first rule wins).
# Only words about the frame or the shot: "cinematic" names a style (lighting, grading), and a
# "cinematic close-up portrait" is no wide shot (issue 23).
_FRAMING_WORDS = (
    (("panorama", "panoramic", "ultrawide", "ultra wide"), "21:9", "the prompt asks for a panorama"),
    (("wide shot", "wide angle", "establishing shot", "widescreen", "cinemascope", "letterbox"), "16:9",
     "the prompt asks for a wide shot"),
    (("full body", "full-body", "standing"), "2:3", "a full-body subject needs a tall frame"),
    (("close-up", "closeup", "headshot", "portrait of"), "3:4", "a close-up is framed tall"),
    (("phone wallpaper", "mobile wallpaper", "vertical poster"), "9:16", "the prompt asks for a vertical format"),
)
# Each rule keeps its words for a substring pre-check: most prompts contain none of them, and
# ``in`` is several times faster than a regex search over the whole prompt.
_FRAMING = tuple((words, re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b"), aspect,
                  reason) for words, aspect, reason in _FRAMING_WORDS)


@lru_cache(maxsize=256)
def parse_aspect(text: str) -> float:
    """'16:9' (also '16x9', '16/9' or a plain ratio like '1.78') -> width / height.

    Raises ParamsError for anything else, for non-positive sides, and beyond 4:1 either way.
    """
    fields = str(text).strip().lower()
    for sep in ("x", "/", "*"):
        fields = fields.replace(sep, ":")
    try:
        numbers = [float(part) for part in fields.split(":")]
    except ValueError:
        numbers = []
    ratio = float("nan")
    if len(numbers) == 1:
        ratio = numbers[0]
    elif len(numbers) == 2 and numbers[0] > 0 and numbers[1] > 0:
        ratio = numbers[0] / numbers[1]
    if not (math.isfinite(ratio) and ratio > 0):
        raise ParamsError(f"aspect_ratio: cannot read {text!r}; use 'auto' or W:H with two "
                          f"positive numbers, such as {', '.join(ASPECT_CHOICES[1:])}")
    if not (1 / _MAX_RATIO <= ratio <= _MAX_RATIO):
        raise ParamsError(f"aspect_ratio: {text!r} is more extreme than 4:1; choose a ratio "
                          "between 1:4 and 4:1")
    return ratio


def auto_aspect(content_type: str, prompt_text: str) -> tuple[str, str]:
    """(aspect, reason) for 'auto': framing words in the prompt first, then the content type."""
    lowered = prompt_text.lower()
    for words, pattern, aspect, reason in _FRAMING:
        for word in words:
            if word in lowered:
                if pattern.search(lowered):
                    return aspect, reason
                break
    if content_type in CONTENT_ASPECT:
        return CONTENT_ASPECT[content_type]
    return "1:1", "no framing cue in the prompt: square 1:1"


@lru_cache(maxsize=2048)
def nearest_bucket(family: FamilyProfile, ratio: float) -> tuple[int, int]:
    """The family's bucket closest to ``ratio`` (ties -> nearest the native area)."""
    target = math.log(ratio)
    return min(family.buckets,
               key=lambda wh: (round(abs(math.log(wh[0] / wh[1]) - target), 3),
                               abs(wh[0] * wh[1] - family.native_area)))
