"""`kubik loras scan` and `kubik loras recommend`: the documented --json outputs and errors."""
from __future__ import annotations

import hashlib
import json

from kubik_core.cli import main


def test_scan_json(library_dir, tmp_path, capsys):
    (library_dir / "broken.safetensors").write_bytes(b"\x00" * 4)
    cache = tmp_path / "index.json"
    assert main(["loras", "scan", str(library_dir), "--cache", str(cache), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    files = {f["name"]: f for f in data["files"]}
    assert set(files["xl/anime_lineart_xl.safetensors"]) == {
        "name", "path", "format", "base", "variant", "arch_source", "layout", "rank", "triggers",
        "sha256", "autov2", "autov3", "problems"}
    film = files["xl/film_photo_xl.safetensors"]
    digest = hashlib.sha256(open(film["path"], "rb").read()).hexdigest()
    assert (film["sha256"], film["autov2"]) == (digest, digest[:10])
    assert files["broken.safetensors"]["problems"] and files["broken.safetensors"]["sha256"] == ""
    assert data["stats"]["files"] == 8 and data["stats"]["read"] == 8
    assert main(["loras", "scan", str(library_dir), "--cache", str(cache), "--json", "--no-hash"]) == 0
    assert json.loads(capsys.readouterr().out)["stats"]["cached"] == 8


def test_scan_text_and_bad_folder(library_dir, capsys):
    assert main(["loras", "scan", str(library_dir), "--no-cache", "--no-hash"]) == 0
    out = capsys.readouterr().out
    assert "xl/pony_cartoon.safetensors\n  base sdxl (pony) [civitai], kohya, rank 2" in out
    assert main(["loras", "scan", str(library_dir / "nope"), "--no-cache"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_recommend_json(library_dir, capsys):
    assert main(["loras", "recommend", "analog film photo of a harbour", "--library", str(library_dir),
                 "--family", "sdxl", "--no-cache", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["family"] == "sdxl" and data["similarity"] == "bm25"
    pick = data["picks"][0]
    assert pick["name"] == "xl/film_photo_xl.safetensors" and pick["strength_model"] == 0.7
    assert set(pick["factors"]) == {"semantic", "keyword", "popularity", "history", "relevance"}
    assert data["triggers"] == "analog film photo"


def test_recommend_errors(library_dir, capsys):
    base = ["loras", "recommend", "castle", "--library", str(library_dir), "--no-cache"]
    assert main(base + ["--family", "sd9"]) == 2
    assert "unknown model family" in capsys.readouterr().err
    assert main(base + ["--weights", "semantic=lots"]) == 2
    assert "not name=number" in capsys.readouterr().err
    assert main(base + ["--weights", "novelty=1"]) == 2
    assert "unknown weight" in capsys.readouterr().err


def test_recommend_with_history_from_a_store(library_dir, tmp_path, capsys):
    from kubik_core.learning import GenerationRecord, LearningStore

    store = LearningStore(tmp_path / "s.sqlite3")
    for _ in range(3):
        gen = store.record_generation(GenerationRecord(prompt="x", loras=[{"name": "xl/film_photo_xl.safetensors"}]))
        store.record_feedback(gen, 5)
    args = ["loras", "recommend", "analog film photo", "--library", str(library_dir), "--family", "sdxl",
            "--no-cache", "--json", "--store"]
    assert main(args + [str(tmp_path / "s.sqlite3")]) == 0
    assert json.loads(capsys.readouterr().out)["picks"][0]["factors"]["history"] == 0.688
    assert main(args + [str(tmp_path / "missing.sqlite3")]) == 2
    assert "no learning store" in capsys.readouterr().err and not (tmp_path / "missing.sqlite3").exists()


def test_recommend_with_wildcards_seed_and_other_variants(library_dir, tmp_path, capsys):
    (tmp_path / "wild").mkdir()
    (tmp_path / "wild" / "look.txt").write_text("analog film photo\n")
    base = ["loras", "recommend", "--library", str(library_dir), "--family", "sdxl", "--no-cache", "--json"]
    assert main(base + ["__look__ of a harbour", "--wildcards", str(tmp_path / "wild"), "--seed", "3"]) == 0
    assert [p["name"] for p in json.loads(capsys.readouterr().out)["picks"]] == ["xl/film_photo_xl.safetensors"]
    assert main(base + ["__look__ of a harbour", "--wildcards", str(tmp_path / "nope")]) == 2
    assert "--wildcards: no folder" in capsys.readouterr().err
    assert main(base + ["cartoon style, a dog"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["picks"] == [] and data["filtered"] == {"other SDXL variant": 1}
    assert main(base + ["cartoon style, a dog", "--allow-other-variants"]) == 0
    pick = json.loads(capsys.readouterr().out)["picks"][0]
    assert (pick["name"], pick["kind"], pick["style"]) == ("xl/pony_cartoon.safetensors", "style", "cartoon")
