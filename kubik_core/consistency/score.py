"""Score pictures against a character's references: crop, embed, calibrate, compare.

``score_images`` is the whole capability; the CLI reads files into it and the node converts
ComfyUI batches into it. Its report holds every number behind each pass or fail.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from .calibrate import Calibration, calibrate, prototype
from .crop import Crop, crop_character
from .encoders import ImageEncoder
from .errors import ConsistencyError

Named = tuple[str, Image.Image]


@dataclass
class ScoredImage:
    name: str
    score: float
    passed: bool
    box: tuple[int, int, int, int]
    crop: str

    def to_dict(self) -> dict:
        return {"name": self.name, "score": round(self.score, 6), "passed": self.passed,
                "box": list(self.box), "crop": self.crop}


@dataclass
class ConsistencyReport:
    encoder: str
    crop: str
    references: list[dict]          # name, loo_score, crop
    negatives: list[dict]           # name, score, crop
    calibration: Calibration
    images: list[ScoredImage]

    @property
    def passed_indices(self) -> list[int]:
        return [i for i, image in enumerate(self.images) if image.passed]

    def to_dict(self) -> dict:
        return {"encoder": self.encoder, "crop": self.crop, "threshold": round(self.calibration.threshold, 6),
                "passed": len(self.passed_indices), "total": len(self.images),
                "images": [image.to_dict() for image in self.images],
                "calibration": self.calibration.to_dict(),
                "references": self.references, "negatives": self.negatives}

    def summary(self) -> str:
        """Readable lines: the verdicts, then the calibration behind them."""
        c = self.calibration
        lines = [f"{'PASS' if image.passed else 'FAIL'}  {image.score:.3f}  {image.name}" for image in self.images]
        lines.append(f"{len(self.passed_indices)} of {len(self.images)} pass; threshold {c.threshold:.3f} "
                     f"({c.method}; encoder {self.encoder}, crop {self.crop})")
        loo = ", ".join(f"{s:.3f}" for s in c.loo_scores)
        lines.append(f"references ({len(c.loo_scores)}), leave-one-out: {loo}; low {c.reference_low:.3f}")
        if c.negative_high is not None:
            neg = ", ".join(f"{s:.3f}" for s in c.negative_scores)
            lines.append(f"negatives ({len(c.negative_scores)}): {neg}; high {c.negative_high:.3f}; "
                         f"margin {c.margin:+.3f}; AUC {c.auc:.3f}")
        if c.method == "user":
            lines.append(f"calibrated threshold would be {c.calibrated_threshold:.3f}")
        lines += [f"note: {note}" for note in c.notes]
        return "\n".join(lines)


def _crops(named: Sequence[Named], mode: str, masks: Sequence[np.ndarray | None] | None,
           what: str) -> list[Crop]:
    crops = []
    for i, (name, image) in enumerate(named):
        mask = masks[i] if masks is not None else None
        try:
            crops.append(crop_character(image, mode, mask))
        except ConsistencyError as exc:
            raise ConsistencyError(f"{what} {name}: {exc}") from None
    return crops


def score_images(encoder: ImageEncoder, references: Sequence[Named], images: Sequence[Named],
                 negatives: Sequence[Named] = (), crop: str = "smart",
                 masks: Sequence[np.ndarray | None] | None = None,
                 threshold: float | None = None) -> ConsistencyReport:
    """Score ``images`` (name, picture) against ``references``; ``negatives`` are other subjects
    for the calibration; ``masks`` (one per image, None for none) mark the character in each
    image; ``threshold`` overrides the calibrated one."""
    if len(references) < 2:
        raise ConsistencyError(f"references: {len(references)} picture(s); give at least 2 pictures of "
                               "the character (5 or more calibrate better)")
    if not images:
        raise ConsistencyError("images: no pictures to score")
    if masks is not None and len(masks) != len(images):
        raise ConsistencyError(f"masks: {len(masks)} masks for {len(images)} images; give one per image")
    if threshold is not None and not (math.isfinite(threshold) and -1.0 <= threshold <= 1.0):
        raise ConsistencyError(f"threshold: {threshold} is not a cosine similarity from -1 to 1")
    reference_crops = _crops(references, crop, None, "reference")
    negative_crops = _crops(negatives, crop, None, "negative")
    image_crops = _crops(images, crop, masks, "image")
    everything = [c.image for c in reference_crops + negative_crops + image_crops]
    vectors = encoder.embed(everything)
    r, m = len(reference_crops), len(negative_crops)
    ref_vectors, neg_vectors, image_vectors = vectors[:r], vectors[r:r + m], vectors[r + m:]
    calibration = calibrate(ref_vectors, neg_vectors if m else None, threshold)
    scores = (image_vectors @ prototype(ref_vectors)).double().numpy()
    scored = [ScoredImage(name, float(score), bool(score >= calibration.threshold), c.box, c.method)
              for (name, _), score, c in zip(images, scores, image_crops)]
    refs = [{"name": name, "loo_score": round(s, 6), "crop": c.method}
            for (name, _), s, c in zip(references, calibration.loo_scores, reference_crops)]
    negs = [{"name": name, "score": round(s, 6), "crop": c.method}
            for (name, _), s, c in zip(negatives, calibration.negative_scores, negative_crops)]
    return ConsistencyReport(encoder.name, crop, refs, negs, calibration, scored)
