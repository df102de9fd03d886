"""The calibration rule, on hand-made embeddings (exact numbers) and on real pictures with an
encoder that knows something (held-out pass rates).

For the real test no CLIP or DINOv2 weights can be had offline, so the encoder is HOG
(histograms of oriented gradients, scikit-image): a fixed, well-known shape descriptor, plugged
in through FunctionEncoder like ComfyUI's CLIP_VISION is. The pictures are scikit-learn's
handwritten digits: one digit plays the character (8 references), two pictures of each other
digit are the negative control, and the threshold is judged on 50 other pictures of the digit
and 54 of other digits that calibration never saw. A second test does the same with real photos:
two camera views of one motorcycle against photos of other subjects.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from kubik_core.consistency.calibrate import (calibrate, equal_error_threshold, leave_one_out_scores,
                                              prototype)
from kubik_core.consistency.encoders import FunctionEncoder
from kubik_core.consistency.errors import ConsistencyError
from kubik_core.consistency.score import score_images


def _unit(rows) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)


def test_leave_one_out_scores_each_reference_against_the_others():
    refs = _unit([[1, 0, 0], [0.8, 0.6, 0], [0.8, 0, 0.6]])
    loo = leave_one_out_scores(refs)
    for i in range(3):
        others = torch.cat([refs[:i], refs[i + 1:]])
        assert loo[i].item() == pytest.approx(float(refs[i] @ prototype(others)), abs=1e-6)
    assert loo[0].item() == pytest.approx(float(refs[0] @ _unit([[1.6, 0.6, 0.6]])[0]), abs=1e-6)


def test_midpoint_between_the_reference_low_and_the_negative_high():
    refs = _unit([[1, 0.1 * k, 0] for k in range(6)])
    negs = _unit([[0.2, 1, 0], [0, 0, 1], [0.1, 0.5, 1]])
    c = calibrate(refs, negs)
    loo = leave_one_out_scores(refs).double().numpy()
    neg = (negs @ prototype(refs)).double().numpy()
    low, high = np.quantile(loo, 0.1), np.quantile(neg, 0.9)
    assert c.method == "midpoint" and c.margin == pytest.approx(low - high) and c.margin > 0
    assert c.threshold == pytest.approx((low + high) / 2) and c.auc == 1.0
    assert c.calibrated_threshold == c.threshold and c.loo_scores == pytest.approx(loo.tolist())


def test_overlap_gives_the_equal_error_threshold_and_says_so():
    positives, negatives = np.array([0.9, 0.8, 0.7, 0.5]), np.array([0.6, 0.4, 0.3, 0.75])
    t = equal_error_threshold(positives, negatives)
    assert (positives < t).mean() == (negatives >= t).mean() == 0.25   # one error on each side
    refs = _unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    c = calibrate(refs, _unit([[1, 1, 1]]))
    assert c.method == "equal_error" and c.margin < 0 and c.auc == 0.0
    assert any("overlap" in note for note in c.notes)


def test_references_only_rule_and_user_threshold():
    refs = _unit([[1, 0.1 * k, 0.05 * k * k] for k in range(5)])
    loo = leave_one_out_scores(refs).double().numpy()
    c = calibrate(refs)
    assert c.method == "references_only" and c.negative_high is None and c.margin is None
    assert c.threshold == pytest.approx(loo.min() - np.std(loo, ddof=1))
    assert any("no negative control" in note for note in c.notes)
    two = calibrate(refs[:2])   # no spread to measure: the one LOO score, and a note
    assert two.threshold == pytest.approx(two.loo_scores[0]) and any("only 2" in n for n in two.notes)
    user = calibrate(refs, threshold=0.42)
    assert user.method == "user" and user.threshold == 0.42 and user.calibrated_threshold == c.threshold
    with pytest.raises(ConsistencyError, match="references: 1 picture"):
        calibrate(refs[:1])


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    pictures = [Image.fromarray((row.reshape(8, 8) / 16 * 255).astype(np.uint8)).resize(
        (32, 32), Image.Resampling.BILINEAR).convert("RGB") for row in data.data]
    return pictures, data.target


def _hog(crops):
    from skimage.feature import hog

    return np.stack([hog(np.asarray(c.convert("L"), dtype=np.float32) / 255, orientations=9,
                         pixels_per_cell=(8, 8), cells_per_block=(2, 2)) for c in crops])


def _pass_rates(digits, digit: int, with_negatives: bool):
    pictures, labels = digits
    same = np.flatnonzero(labels == digit)
    others = [np.flatnonzero(labels == k) for k in range(10) if k != digit]
    references, held_same = same[:8], same[8:58]
    negatives = np.concatenate([o[:2] for o in others])
    held_other = np.concatenate([o[10:16] for o in others])          # never used to calibrate
    named = lambda idx: [(f"#{i}", pictures[i]) for i in idx]  # noqa: E731
    report = score_images(FunctionEncoder(_hog, "HOG"), named(references),
                          named(np.concatenate([held_same, held_other])),
                          named(negatives) if with_negatives else (), crop="none")
    passed = np.array([image.passed for image in report.images])
    return passed[:50].mean(), passed[50:].mean(), report.calibration


def test_calibration_separates_a_digit_from_the_others_on_held_out_pictures(digits):
    same_rates, other_rates = [], []
    for digit in range(10):
        same, other, calibration = _pass_rates(digits, digit, with_negatives=True)
        assert calibration.auc >= 0.85, (digit, calibration)   # references rank above negatives
        assert same - other >= 0.5, (digit, same, other)
        same_rates.append(same)
        other_rates.append(other)
    # Most held-out pictures of the digit pass, hardly any of another digit does.
    assert np.mean(same_rates) >= 0.7 and np.mean(other_rates) <= 0.05, (same_rates, other_rates)


def test_without_negatives_other_subjects_can_pass(digits):
    """Why the negative control matters: with references only, a 9 lets most other digits through
    (HOG sees 9s close to 4s and 7s), where the calibrated threshold keeps them out."""
    _, other_refs_only, calibration = _pass_rates(digits, 9, with_negatives=False)
    _, other_calibrated, _ = _pass_rates(digits, 9, with_negatives=True)
    assert calibration.method == "references_only"
    assert other_refs_only >= 0.5 and other_calibrated <= 0.05


def _views(picture, count: int, seed: int) -> list:
    """Random 75-95 % crops of a photo, half mirrored, brightness +-20 %: the same subject framed
    and lit differently, as generated pictures of one character are."""
    from PIL import ImageEnhance

    rng = np.random.default_rng(seed)
    image = Image.fromarray(picture).convert("RGB")
    views = []
    for _ in range(count):
        scale = rng.uniform(0.75, 0.95)
        w, h = int(image.width * scale), int(image.height * scale)
        x, y = rng.integers(0, image.width - w + 1), rng.integers(0, image.height - h + 1)
        view = image.crop((x, y, x + w, y + h))
        if rng.random() < 0.5:
            view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        views.append(ImageEnhance.Brightness(view).enhance(rng.uniform(0.8, 1.2)))
    return views


def test_calibration_passes_another_view_of_the_object_and_not_unseen_subjects():
    """scikit-image's stereo motorcycle: references are views of the left camera's photo, the
    held-out positives views of the right camera's (the object seen from elsewhere); the negative
    control is four photos, the held-out negatives nine photos calibration never saw. Whole
    pictures (crop "none"): on square smart or centre crops HOG finds brick, grass and gravel
    textures close to the motorcycle's (37-41 % of the unseen photos passed when measured), a
    limit of this hand-made encoder, not of the calibration rule."""
    from skimage import data

    hog_64 = lambda crops: _hog([c.convert("L").resize((64, 64)) for c in crops])  # noqa: E731
    left, right, _ = data.stereo_motorcycle()
    references = _views(left, 8, 0)
    negatives = [v for i, name in enumerate(["astronaut", "coffee", "chelsea", "rocket"])
                 for v in _views(getattr(data, name)(), 2, i)]
    unseen = ["camera", "immunohistochemistry", "hubble_deep_field", "coins", "page", "brick", "grass",
              "gravel", "retina"]
    held_out = _views(right, 20, 1) + [v for i, name in enumerate(unseen)
                                       for v in _views(getattr(data, name)(), 3, 10 + i)]
    named = lambda pictures: [(f"#{i}", p) for i, p in enumerate(pictures)]  # noqa: E731
    report = score_images(FunctionEncoder(hog_64, "HOG"), named(references), named(held_out),
                          named(negatives), crop="none")
    passed = np.array([image.passed for image in report.images])
    assert report.calibration.method == "midpoint" and report.calibration.margin > 0
    assert passed[:20].mean() >= 0.9 and passed[20:].mean() <= 0.1, report.summary()
