"""Per-character threshold from the references' own spread and a negative control.

A cosine score of 0.68 means nothing on its own: one encoder puts all faces above 0.8, another
puts two photos of the same person at 0.5. So the threshold is measured for each character:

- The character is the mean of its reference embeddings (the "prototype"); a picture's score is
  its cosine similarity to the prototype.
- Leave-one-out (LOO): each reference is scored against the prototype of the others. These
  scores are what a new, genuine picture of the character can be expected to get (a reference
  never counts in its own prototype, as a new picture would not).
- Negative control: pictures of other subjects, scored against the full prototype: what a
  picture of someone else gets.

The rule (``QUANTILE`` = 0.1):
- reference_low = the 10th percentile of the LOO scores, negative_high = the 90th percentile of
  the negative scores; margin = reference_low - negative_high.
- margin > 0 (separated): threshold = midway between the two ("midpoint").
- margin <= 0 (they overlap): the equal-error threshold, where the share of references that
  would fail equals the share of negatives that would pass ("equal_error"); a note says the
  encoder does not tell this character from the negatives well.
- no negatives: threshold = the lowest LOO score minus the LOO scores' standard deviation
  ("references_only"): a picture must look about as much like the character as its least
  typical reference does. Nothing checks that other subjects score lower; a note says so.
- a threshold the user sets is used as given ("user"); the calibration is still reported.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .errors import ConsistencyError

QUANTILE = 0.1
FEW_REFERENCES = 5


@dataclass
class Calibration:
    method: str                       # midpoint, equal_error, references_only or user
    threshold: float                  # the threshold used
    calibrated_threshold: float       # what the rule gives (equal to threshold unless "user")
    loo_scores: list[float]
    negative_scores: list[float]
    reference_low: float              # QUANTILE-quantile of the LOO scores
    negative_high: float | None       # (1 - QUANTILE)-quantile of the negative scores
    margin: float | None              # reference_low - negative_high: > 0 means separated
    auc: float | None                 # share of (reference, negative) pairs ranked right
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {key: (round(value, 6) if isinstance(value, float) else
                      [round(v, 6) for v in value] if key.endswith("_scores") else value)
                for key, value in asdict(self).items()}


def prototype(embeddings: torch.Tensor) -> torch.Tensor:
    """The unit mean of unit embeddings [N, D] -> [D]."""
    return torch.nn.functional.normalize(embeddings.mean(dim=0), dim=0, eps=1e-12)


def leave_one_out_scores(embeddings: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each embedding to the unit mean of all the others."""
    n = embeddings.shape[0]
    others = (embeddings.sum(dim=0, keepdim=True) - embeddings) / (n - 1)
    others = torch.nn.functional.normalize(others, dim=1, eps=1e-12)
    return (embeddings * others).sum(dim=1)


def _auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    greater = (positives[:, None] > negatives[None, :]).mean()
    ties = (positives[:, None] == negatives[None, :]).mean()
    return float(greater + 0.5 * ties)


def equal_error_threshold(positives: np.ndarray, negatives: np.ndarray) -> float:
    """The threshold between sorted scores where max(fail share of positives, pass share of
    negatives) is smallest; the middle one of equally good thresholds."""
    values = np.unique(np.concatenate([positives, negatives]))
    candidates = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    errors = np.array([max((positives < t).mean(), (negatives >= t).mean()) for t in candidates])
    best = np.flatnonzero(errors == errors.min())
    return float(candidates[best[len(best) // 2]])


def calibrate(references: torch.Tensor, negatives: torch.Tensor | None = None,
              threshold: float | None = None) -> Calibration:
    """The Calibration of unit reference embeddings [N, D] (N >= 2) and negatives [M, D]."""
    n = references.shape[0]
    if n < 2:
        raise ConsistencyError(f"references: {n} picture(s); give at least 2 pictures of the character "
                               f"({FEW_REFERENCES} or more calibrate better)")
    loo = leave_one_out_scores(references).double().numpy()
    low = float(np.quantile(loo, QUANTILE))
    notes = []
    if n < FEW_REFERENCES:
        notes.append(f"only {n} references: the spread is barely measured; give {FEW_REFERENCES} or more")
    neg = np.zeros(0)
    high = margin = auc = None
    if negatives is not None and negatives.shape[0] > 0:
        neg = (negatives @ prototype(references)).double().numpy()
        high = float(np.quantile(neg, 1 - QUANTILE))
        margin = low - high
        auc = _auc(loo, neg)
        if margin > 0:
            method, calibrated = "midpoint", (low + high) / 2
        else:
            method, calibrated = "equal_error", equal_error_threshold(loo, neg)
            notes.append(f"references and negatives overlap (margin {margin:.3f}): this encoder does not "
                         "tell the character from the negatives well; the threshold is the equal-error point")
    else:
        spread = float(np.std(loo, ddof=1)) if n >= 3 else 0.0
        method, calibrated = "references_only", float(loo.min()) - spread
        notes.append("no negative control: the threshold comes from the references only (lowest LOO "
                     "score minus their spread); give pictures of other subjects to check it")
    used = calibrated
    if threshold is not None:
        method, used = "user", float(threshold)
    return Calibration(method, float(used), float(calibrated), loo.tolist(), neg.tolist(), low, high,
                       margin, auc, notes)
