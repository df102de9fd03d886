"""Scanning a real library: architectures, sidecars, triggers, bad files, the cache, hashes."""
from __future__ import annotations

import hashlib
import json
import os
import pickle

import pytest

from kubik_core.loras import scan_library
from kubik_core.loras.library import CACHE_VERSION
from kubik_core.loras.synthetic import write_lora


def _by_name(library):
    return {e.name: e for e in library.entries.values()}


def test_base_architecture_layout_and_metadata(library_dir):
    entries = _by_name(scan_library([library_dir]))
    expected = {
        "sd15/watercolor_style.safetensors": ("sd1", "", "modelspec", "kohya"),
        "sd15/peft_cat.safetensors": ("sd1", "", "keys", "peft"),
        "xl/anime_lineart_xl.safetensors": ("sdxl", "", "modelspec", "kohya"),
        "xl/film_photo_xl.safetensors": ("sdxl", "", "civitai", "peft"),
        "xl/pony_cartoon.safetensors": ("sdxl", "pony", "civitai", "kohya"),
        "xl/castle_detail.safetensors": ("sdxl", "", "a1111", "kohya"),
        "flux/flux_neon.safetensors": ("flux", "", "modelspec", "kohya"),
    }
    for name, (base, variant, source, layout) in expected.items():
        e = entries[name]
        assert (e.base, e.variant, e.arch_source, e.layout) == (base, variant, source, layout), name
        if layout == "peft":   # ComfyUI 0.8.0 cannot map these UNet names (test_comfy_keys.py)
            assert len(e.problems) == 1 and "does not map" in e.problems[0], name
        else:
            assert e.problems == [], (name, e.problems)
    assert entries["xl/anime_lineart_xl.safetensors"].rank == 2
    assert entries["xl/anime_lineart_xl.safetensors"].trains_text_encoder


def test_key_and_shape_detection_without_metadata(tmp_path):
    for layout, base in (("kohya", "sd1"), ("kohya", "sd2"), ("kohya", "sdxl"), ("peft", "sd1"),
                         ("peft", "sdxl"), ("kohya", "flux"), ("diffusers", "sd1"), ("diffusers", "sdxl")):
        write_lora(tmp_path / f"{layout}_{base}_plain.safetensors", layout, base)
    entries = _by_name(scan_library([tmp_path]))
    for name, entry in entries.items():
        assert entry.base == name.split("_")[1], name
        assert (entry.arch_source, entry.layout, entry.rank) == ("keys", name.split("_")[0], 2), name
        assert bool(entry.problems) == (entry.layout == "peft"), (name, entry.problems)


def test_triggers_from_every_source(library_dir):
    entries = _by_name(scan_library([library_dir]))
    assert entries["xl/film_photo_xl.safetensors"].triggers == ["analog film photo"]      # trainedWords
    assert entries["sd15/watercolor_style.safetensors"].triggers == ["wtrclr"]            # trigger_phrase
    assert entries["xl/castle_detail.safetensors"].triggers == ["gothic castle", "towers"]  # activation text
    # Training tags are what the images showed, not words that call the LoRA: no trigger field, no triggers.
    assert entries["xl/anime_lineart_xl.safetensors"].triggers == []


def test_sidecar_fields(library_dir):
    film = _by_name(scan_library([library_dir]))["xl/film_photo_xl.safetensors"]
    info = film.info
    assert info.usage_tips == {"strength": 0.7, "clip_strength": 0.6, "strength_min": 0.4, "strength_max": 0.9}
    assert (info.downloads, info.thumbs_up, info.thumbs_down) == (50000, 900, 10)
    assert "film grain" in info.tags and info.title == "Some LoRA v1.0"
    castle = _by_name(scan_library([library_dir]))["xl/castle_detail.safetensors"]
    assert castle.info.preferred_weight == 0.8 and "my note" in castle.info.notes


def test_sidecars_with_wrong_types_are_reported_not_fatal(tmp_path):
    write_lora(tmp_path / "odd.safetensors", "kohya", "sdxl")
    (tmp_path / "odd.civitai.info").write_text(json.dumps({
        "baseModel": 12, "trainedWords": "single word", "stats": [1, 2], "model": {"tags": [1, "ok"]}}))
    (tmp_path / "odd.metadata.json").write_text(json.dumps({"usage_tips": "{not json", "tags": "x"}))
    (tmp_path / "odd.json").write_text("[1, 2, 3]")
    entry = _by_name(scan_library([tmp_path]))["odd.safetensors"]
    assert entry.readable and entry.base == "sdxl"
    assert entry.triggers == ["single word"]
    problems = " | ".join(entry.problems)
    for fragment in ("baseModel should be text", "stats should be an object", "tags has entries",
                     "usage_tips: not valid JSON", "odd.json: expected a JSON object"):
        assert fragment in problems


class _Boom:
    """Unpickling this creates a marker file: the scan must never unpickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_bad_files_are_listed_with_problems_and_the_scan_finishes(tmp_path):
    write_lora(tmp_path / "good.safetensors", "peft", "sdxl")
    (tmp_path / "truncated.safetensors").write_bytes(b"\x00\x01\x00")
    (tmp_path / "beyond.safetensors").write_bytes((10_000).to_bytes(8, "little") + b"{}")
    (tmp_path / "badjson.safetensors").write_bytes((4).to_bytes(8, "little") + b"{x:1")
    (tmp_path / "latin1.safetensors").write_bytes((3).to_bytes(8, "little") + b"\xe9\xe9\xe9")
    marker = tmp_path / "UNPICKLED"
    (tmp_path / "legacy.ckpt").write_bytes(pickle.dumps(_Boom(str(marker))))
    entries = _by_name(scan_library([tmp_path]))
    assert entries["good.safetensors"].readable
    for name, fragment in (("truncated.safetensors", "no header length"),
                           ("beyond.safetensors", "runs past the end"),
                           ("badjson.safetensors", "not valid JSON"),
                           ("latin1.safetensors", "not valid UTF-8"),
                           ("legacy.ckpt", "pickle-based file")):
        assert not entries[name].readable
        assert fragment in entries[name].problems[0], name
    assert not marker.exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root reads folders whatever their mode: chmod 000 cannot make one unreadable")
def test_unreadable_folder_is_reported(tmp_path):
    write_lora(tmp_path / "ok.safetensors", "peft", "sdxl")
    locked = tmp_path / "locked"
    write_lora(locked / "hidden.safetensors", "peft", "sdxl")
    locked.chmod(0)
    try:
        library = scan_library([tmp_path])
    finally:
        locked.chmod(0o755)
    assert [e.name for e in library.entries.values()] == ["ok.safetensors"]
    assert any("locked" in p and "cannot list" in p for p in library.problems)


def test_folder_that_cannot_be_listed_is_reported(tmp_path, monkeypatch):
    """Same behaviour as above, also when running as root: os.scandir raising PermissionError
    is what an unreadable folder produces."""
    write_lora(tmp_path / "ok.safetensors", "peft", "sdxl")
    locked = tmp_path / "locked"
    write_lora(locked / "hidden.safetensors", "peft", "sdxl")
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    library = scan_library([tmp_path])
    assert [e.name for e in library.entries.values()] == ["ok.safetensors"]
    assert any("locked" in p and "Permission denied" in p for p in library.problems)


def test_cache_rescan_reads_nothing_and_notices_changes(library_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "index.json"
    first = scan_library([library_dir], cache_path=cache)
    assert first.stats.read == 7 and cache.exists()

    import kubik_core.loras.library as library_module

    calls = []
    real = library_module.read_entry
    monkeypatch.setattr(library_module, "read_entry", lambda *a: calls.append(a[1]) or real(*a))
    second = scan_library([library_dir], cache_path=cache)
    assert (second.stats.read, second.stats.cached, calls) == (0, 7, [])
    assert {e.name: e.triggers for e in second.entries.values()} == \
        {e.name: e.triggers for e in first.entries.values()}

    side = library_dir / "xl" / "castle_detail.json"
    side.write_text(json.dumps({"activation text": "ruined castle"}))
    os.utime(side, ns=(side.stat().st_mtime_ns + 10**9,) * 2)
    (library_dir / "sd15" / "peft_cat.safetensors").unlink()
    third = scan_library([library_dir], cache_path=cache)
    assert calls == ["xl/castle_detail.safetensors"]
    assert (third.stats.read, third.stats.cached, third.stats.removed) == (1, 5, 1)
    assert _by_name(third)["xl/castle_detail.safetensors"].triggers == ["ruined castle"]


def test_unreadable_cache_is_rebuilt(library_dir, tmp_path):
    cache = tmp_path / "index.json"
    cache.write_text("{broken")
    library = scan_library([library_dir], cache_path=cache)
    assert library.stats.read == 7
    assert json.loads(cache.read_text())["version"] == CACHE_VERSION


def test_hashes_match_civitai_definitions_and_are_cached(library_dir, tmp_path):
    cache = tmp_path / "index.json"
    library = scan_library([library_dir], cache_path=cache)
    thread = library.start_background_hashing()
    thread.join(timeout=60)
    assert not thread.is_alive()
    for entry in library.entries.values():
        data = open(entry.path, "rb").read()
        full = hashlib.sha256(data).hexdigest()
        header_len = int.from_bytes(data[:8], "little")
        assert entry.sha256 == full and entry.autov2 == full[:10]
        assert entry.autov3 == hashlib.sha256(data[8 + header_len:]).hexdigest()[:12]
    again = scan_library([library_dir], cache_path=cache)
    assert again.stats.read == 0 and not again.missing_hashes()


def test_sidecar_hash_is_trusted_only_when_newer_than_the_file(tmp_path):
    path = write_lora(tmp_path / "h.safetensors", "peft", "sdxl")
    claimed = "ab" * 32
    side = tmp_path / "h.metadata.json"
    side.write_text(json.dumps({"sha256": claimed}))
    old = path.stat().st_mtime_ns - 10**10
    os.utime(side, ns=(old, old))
    assert _by_name(scan_library([tmp_path]))["h.safetensors"].sha256 == ""
    os.utime(side, ns=(old + 2 * 10**10,) * 2)
    entry = _by_name(scan_library([tmp_path]))["h.safetensors"]
    assert (entry.sha256, entry.autov2, entry.hash_source) == (claimed, claimed[:10], "sidecar")
