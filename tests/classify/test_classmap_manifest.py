"""Class maps and manifests: one map, read the same way from folders, CSV and JSONL."""
from __future__ import annotations

import json

import pytest

from kubik_core.classify.classmap import ClassMap, ClassMapMismatch
from kubik_core.classify.manifest import Sample, read_dataset, write_jsonl


def test_class_map_is_sorted_unique_and_round_trips(tmp_path):
    cmap = ClassMap.from_labels(["rose", "daisy", "rose", "tulip"])
    assert cmap.names == ("daisy", "rose", "tulip")
    assert cmap.index("tulip") == 2
    loaded = ClassMap.load(cmap.save(tmp_path / "classes.json"))
    assert loaded == cmap and loaded.fingerprint == cmap.fingerprint


def test_damaged_class_map_file_is_refused(tmp_path):
    path = ClassMap(("a", "b")).save(tmp_path / "classes.json")
    data = json.loads(path.read_text())
    data["classes"] = ["b", "a"]  # reordered without updating the fingerprint
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="damaged"):
        ClassMap.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ClassMap.load(path)


def test_mismatched_maps_name_the_difference():
    train = ClassMap(("a", "b", "c"))
    with pytest.raises(ClassMapMismatch, match=r"classes missing from the checkpoint \(e.g. \['c'\]\)"):
        train.require_same(ClassMap(("a", "b")), "the checkpoint")
    with pytest.raises(ClassMapMismatch, match="another order"):
        train.require_same(ClassMap(("a", "c", "b")), "the checkpoint")
    with pytest.raises(KeyError, match="not in the class map"):
        train.index("z")


def test_duplicate_or_empty_names_are_refused():
    with pytest.raises(ValueError, match="duplicate"):
        ClassMap(("a", "a"))
    with pytest.raises(ValueError, match="at least one"):
        ClassMap(())


def test_folder_csv_and_jsonl_give_the_same_samples(tmp_path):
    for label in ("cat", "dog"):
        (tmp_path / "imgs" / label / "sub").mkdir(parents=True)
        (tmp_path / "imgs" / label / "a.png").write_bytes(b"x")
        (tmp_path / "imgs" / label / "sub" / "b.JPG").write_bytes(b"x")
        (tmp_path / "imgs" / label / "notes.txt").write_text("not an image")
    from_folder = read_dataset(tmp_path / "imgs")
    assert [(s.label, s.path.split("imgs/")[1]) for s in from_folder] == [
        ("cat", "cat/a.png"), ("cat", "cat/sub/b.JPG"), ("dog", "dog/a.png"), ("dog", "dog/sub/b.JPG")]

    csv_path = tmp_path / "data.csv"
    csv_path.write_text("path,label,group\n" + "".join(
        f"imgs/{s.path.split('imgs/')[1]},{s.label},\n" for s in from_folder))
    assert read_dataset(csv_path) == from_folder

    jsonl = write_jsonl(tmp_path / "manifests" / "all.jsonl", from_folder)
    assert '"path": "../imgs/cat/a.png"' in jsonl.read_text()  # relative: the folder can move
    assert read_dataset(jsonl) == from_folder


def test_urls_and_groups_survive_a_round_trip(tmp_path):
    samples = [Sample("https://example.org/1.jpg", "oak", "obs-1"), Sample("http://h/2.png", "elm")]
    assert read_dataset(write_jsonl(tmp_path / "m.jsonl", samples)) == samples
    assert samples[0].is_url and samples[0].group_key == "obs-1"


@pytest.mark.parametrize("content, message", [
    ('{"path": "a.png"}\n', "no label"),
    ('{"label": "x"}\n', "no image path or URL"),
    ('{"path": "a.png", "label": "x"}\n{broken\n', "line 2: not valid JSON"),
    ('["a.png", "x"]\n', "expected a JSON object"),
    ("", "contains no images"),
])
def test_bad_jsonl_rows_are_reported_with_their_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_dataset(path)


def test_bad_sources_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_dataset(tmp_path / "missing.csv")
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(ValueError, match="expected a folder, a .csv or a .jsonl"):
        read_dataset(tmp_path / "x.txt")
    (tmp_path / "nolabel.csv").write_text("path,kind\na.png,x\n")
    with pytest.raises(ValueError, match="line 2: no label"):
        read_dataset(tmp_path / "nolabel.csv")
