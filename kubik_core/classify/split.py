"""Stratified, group-aware train/val/test split that does not break on tiny classes.

scikit-learn's stratified splitters raise on one-member classes and can leave small classes out
of the test set. Real long-tailed data (a quarter of the classes with a single image) needs a
rule per class instead. Per class, with n groups (a group never straddles splits):

- n = 1: train only (the class is counted as unseen in val/test in the report);
- n = 2 or 3: one group to val, the rest to train;
- n >= 4: about ``val_fraction`` / ``test_fraction`` of the groups, at least one each, at most
  ``max_per_class`` each (iNat2021 caps val at 10 per class), the rest to train.

Everything is seeded: the same samples and seed give the same split, file for file.
"""
from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..common.atomic import write_text_atomic
from .classmap import ClassMap
from .manifest import Sample, write_jsonl

SPLITS = ("train", "val", "test")
SPLIT_FILES = ("train.jsonl", "val.jsonl", "test.jsonl", "classes.json", "split_report.json")


@dataclass
class SplitResult:
    splits: dict[str, list[Sample]]
    class_map: ClassMap
    report: dict = field(default_factory=dict)


def _counts_per_split(n_groups: int, val_fraction: float, test_fraction: float,
                      max_per_class: int | None) -> tuple[int, int]:
    """How many of a class's groups go to val and test."""
    if n_groups <= 1:
        return 0, 0
    n_val = 1 if val_fraction > 0 else 0
    n_test = 0
    if n_groups >= 4:
        n_val = max(1, round(n_groups * val_fraction)) if val_fraction > 0 else 0
        n_test = max(1, round(n_groups * test_fraction)) if test_fraction > 0 else 0
    if max_per_class is not None:
        n_val, n_test = min(n_val, max_per_class), min(n_test, max_per_class)
    return n_val, n_test


def split_samples(samples: list[Sample], val_fraction: float = 0.1, test_fraction: float = 0.1,
                  seed: int = 0, max_per_class: int | None = None) -> SplitResult:
    if not samples:
        raise ValueError("cannot split an empty dataset")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val and test fractions must be in [0, 1) and sum to less than 1")
    seen_paths = Counter(s.path for s in samples)
    duplicates = [p for p, n in seen_paths.items() if n > 1]
    if duplicates:
        raise ValueError(f"{len(duplicates)} images are listed more than once (e.g. {duplicates[0]}): "
                         "remove the duplicates so an image cannot land in two splits")

    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[s.group_key].append(s)
    # A group goes with its majority label (a mixed group stays whole: no leakage).
    groups_by_class: dict[str, list[str]] = defaultdict(list)
    for key in sorted(groups):
        label = Counter(s.label for s in groups[key]).most_common(1)[0][0]
        groups_by_class[label].append(key)

    rng = random.Random(seed)
    assignment: dict[str, str] = {}
    for label in sorted(groups_by_class):
        keys = groups_by_class[label]
        rng.shuffle(keys)
        n_val, n_test = _counts_per_split(len(keys), val_fraction, test_fraction, max_per_class)
        for i, key in enumerate(keys):
            assignment[key] = "val" if i < n_val else "test" if i < n_val + n_test else "train"

    splits = {name: [] for name in SPLITS}
    for s in samples:
        splits[assignment[s.group_key]].append(s)
    class_map = ClassMap.from_labels(s.label for s in samples)
    return SplitResult(splits, class_map, _report(splits, class_map, seed))


def _report(splits: dict[str, list[Sample]], class_map: ClassMap, seed: int) -> dict:
    per_class = {name: {split: 0 for split in SPLITS} for name in class_map.names}
    for split, rows in splits.items():
        for s in rows:
            per_class[s.label][split] += 1
    return {
        "seed": seed,
        "classes": len(class_map),
        "images": {split: len(rows) for split, rows in splits.items()},
        "groups": {split: len({s.group_key for s in rows}) for split, rows in splits.items()},
        "classes_without_val": sum(1 for c in per_class.values() if c["val"] == 0),
        "classes_without_test": sum(1 for c in per_class.values() if c["test"] == 0),
        "classes_without_train": sum(1 for c in per_class.values() if c["train"] == 0),
        "per_class": per_class,
    }


def write_split(result: SplitResult, out_dir: str | Path) -> Path:
    """Write train/val/test.jsonl, classes.json and split_report.json into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in result.splits.items():
        write_jsonl(out_dir / f"{name}.jsonl", rows)
    result.class_map.save(out_dir / "classes.json")
    write_text_atomic(out_dir / "split_report.json", json.dumps(result.report, indent=1) + "\n")
    return out_dir


def summarize(report: dict) -> str:
    images, groups = report["images"], report["groups"]
    text = (f"{report['classes']} classes; images train/val/test = {images['train']}/{images['val']}/"
            f"{images['test']} ({groups['train']}/{groups['val']}/{groups['test']} groups); "
            f"{report['classes_without_val']} classes have no val image, "
            f"{report['classes_without_test']} no test image")
    untrained = sorted(name for name, counts in report.get("per_class", {}).items() if not counts["train"])
    if untrained:
        shown = ", ".join(repr(name) for name in untrained[:5]) + (" ..." if len(untrained) > 5 else "")
        text += (f"; {len(untrained)} class(es) have no training image, so a model trained on "
                 f"this split cannot predict them: {shown}")
    return text
