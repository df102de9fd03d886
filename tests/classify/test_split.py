"""The split: singletons to train, pairs split, groups whole, seeded, with a report."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from kubik_core.classify.classmap import ClassMap
from kubik_core.classify.manifest import Sample, read_dataset
from kubik_core.classify.split import split_samples


def _samples(counts: dict[str, int], group_size: int = 1):
    return [Sample(f"/data/{label}/{i}.jpg", label, f"{label}-obs{i // group_size}")
            for label, n in counts.items() for i in range(n)]


def _where(result):
    return {s.path: name for name, rows in result.splits.items() for s in rows}


def test_tiny_classes_follow_the_rules():
    result = split_samples(_samples({"single": 1, "pair": 2, "three": 3, "many": 50}), 0.1, 0.1)
    per_class = result.report["per_class"]
    assert per_class["single"] == {"train": 1, "val": 0, "test": 0}
    assert per_class["pair"] == {"train": 1, "val": 1, "test": 0}
    assert per_class["three"] == {"train": 2, "val": 1, "test": 0}
    assert per_class["many"] == {"train": 40, "val": 5, "test": 5}
    assert result.report["classes_without_val"] == 1
    assert result.report["classes_without_test"] == 3
    assert result.class_map == ClassMap(("many", "pair", "single", "three"))


def test_groups_never_straddle_splits():
    samples = _samples({"a": 60, "b": 45}, group_size=5)
    where = _where(split_samples(samples, 0.2, 0.2, seed=3))
    by_group = {}
    for s in samples:
        by_group.setdefault(s.group_key, set()).add(where[s.path])
    assert all(len(splits) == 1 for splits in by_group.values())
    assert {"train", "val", "test"} <= set(where.values())


def test_mixed_label_group_stays_whole():
    samples = [Sample("/x/1.jpg", "a", "g1"), Sample("/x/2.jpg", "b", "g1")] + _samples({"a": 10, "b": 10})
    where = _where(split_samples(samples, 0.2, 0.2, seed=1))
    assert where["/x/1.jpg"] == where["/x/2.jpg"]


def test_same_seed_same_split_other_seed_other_split():
    samples = _samples({"a": 40, "b": 30, "c": 7})
    assert _where(split_samples(samples, seed=5)) == _where(split_samples(samples, seed=5))
    assert _where(split_samples(samples, seed=5)) != _where(split_samples(samples, seed=6))


def test_cap_per_class():
    result = split_samples(_samples({"big": 500}), 0.1, 0.1, max_per_class=10)
    assert result.report["per_class"]["big"] == {"train": 480, "val": 10, "test": 10}


@pytest.mark.parametrize("samples, fractions, message", [
    ([], (0.1, 0.1), "empty"),
    (_samples({"a": 3}) + _samples({"a": 1}), (0.1, 0.1), "listed more than once"),
    (_samples({"a": 3}), (0.6, 0.5), "sum to less than 1"),
])
def test_bad_split_requests(samples, fractions, message):
    with pytest.raises(ValueError, match=message):
        split_samples(samples, *fractions)


def test_digits_split_files(digits_split, digits_dir):
    assert {p.name for p in digits_split.iterdir()} == {
        "train.jsonl", "val.jsonl", "test.jsonl", "classes.json", "split_report.json"}
    splits = {name: read_dataset(digits_split / f"{name}.jsonl") for name in ("train", "val", "test")}
    assert sum(len(v) for v in splits.values()) == 1797
    assert not {s.path for s in splits["train"]} & {s.path for s in splits["test"]}
    for rows in splits.values():  # every digit appears in every split, in proportion
        counts = Counter(s.label for s in rows)
        assert len(counts) == 10 and max(counts.values()) < 2 * min(counts.values())
    report = json.loads((digits_split / "split_report.json").read_text())
    assert report["images"] == {name: len(rows) for name, rows in splits.items()}
    assert ClassMap.load(digits_split / "classes.json").names == tuple(str(d) for d in range(10))
