"""Hostile LoRA, checkpoint and sidecar files: one real file per case, each with its exact problem.

Every case is written to disk by the test (safetensors bytes, sidecar files, links, FIFOs) and
read through the real scan, the checkpoint reader, the nodes or the CLI. A bad file must become
a recorded problem of that file (or one clear error naming it), the scan must finish, the rest
of the library must keep working, and nothing the index cache held may be lost.
"""
from __future__ import annotations

import importlib
import json
import os
import struct
import sys
import types
from pathlib import Path

import pytest

from kubik_core.cli import main
from kubik_core.common.bounded_json import loads as bounded_loads
from kubik_core.common.safetensors_file import MAX_HEADER_BYTES
from kubik_core.loras import LoraIndex, recommend, scan_library
from kubik_core.loras.library import CACHE_VERSION
from kubik_core.loras.sidecars import MAX_SIDECAR_BYTES
from kubik_core.loras.synthetic import kohya_metadata, write_lora
from kubik_core.params.checkpoint import read_safetensors_metadata
from kubik_core.params.errors import CheckpointFileError
from kubik_core.prompting import analyze_prompt

KOHYA_KEY = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"


# ----------------------------------------------------------------------------- writers
def safetensors_bytes(header, data: bytes = b"") -> bytes:
    """A safetensors file: u64 length, the header (a dict, or raw bytes as given), the data."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def small_lora_bytes(metadata) -> bytes:
    """A real kohya SDXL LoRA layout (rank 2, zero weights) with ``metadata`` as given,
    which may be anything JSON can hold (the format says strings; crafted files do not)."""
    header = {"__metadata__": metadata}
    offset = 0
    for suffix, shape in ((".lora_down.weight", [2, 2048]), (".lora_up.weight", [640, 2])):
        size = 2 * shape[0] * shape[1]
        header[KOHYA_KEY + suffix] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    return safetensors_bytes(header, bytes(offset))


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# ----------------------------------------------------------------------------- header corpus
def _entry(shape, offsets, dtype="F16"):
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets}


def broken_header_cases() -> list[tuple[str, bytes, str]]:
    """(case, file bytes, the problem the scan records) for files that cannot be read at all."""
    deep = b'{"__metadata__": {"a": "b", "x": ' + nested(1000).encode() + b"}}"
    past_eof = json.dumps({"w": _entry([4], [0, 8])}).encode()
    return [
        ("nested_1000_levels", safetensors_bytes(deep),
         "unreadable header: JSON is nested 1002 levels deep (limit 64)"),
        ("nested_in_a_tensor_entry", safetensors_bytes(b'{"w": {"shape": ' + nested(5000).encode() + b"}}"),
         "unreadable header: JSON is nested 5002 levels deep (limit 64)"),
        ("number_1e999", safetensors_bytes(b'{"w": {"dtype": "F16", "shape": [1], "data_offsets": [0, 1e999]}}'),
         "unreadable header: number 1e999 is out of range (not a finite float)"),
        ("nan", safetensors_bytes(b'{"w": {"dtype": "F16", "shape": [NaN], "data_offsets": [0, 2]}}', b"\0\0"),
         "unreadable header: NaN is not a JSON number (only finite numbers are accepted)"),
        ("unterminated_string_of_escaped_quotes", safetensors_bytes(b'{"a": "' + b'\\"' * 500_000),
         "unreadable header: not valid JSON (Unterminated string starting at: line 1 column 7 (char 6))"),
        ("minus_infinity", safetensors_bytes(b'{"__metadata__": {"a": -Infinity}}'),
         "unreadable header: -Infinity is not a JSON number (only finite numbers are accepted)"),
        ("integer_of_30_digits", safetensors_bytes(b'{"w": {"dtype": "F16", "shape": [' + b"9" * 30 + b"]}}"),
         "unreadable header: number 999999999999999999999999999999... has 30 digits (too large)"),
        ("header_length_2_63", struct.pack("<Q", 2**63) + b"{}",
         f"header length {2**63} is not plausible (limit {MAX_HEADER_BYTES}); not a safetensors file?"),
        ("header_length_0", struct.pack("<Q", 0) + b"{}",
         f"header length 0 is not plausible (limit {MAX_HEADER_BYTES}); not a safetensors file?"),
        ("header_past_eof", struct.pack("<Q", 1000) + b"{}",
         "header length 1000 runs past the end of the file (10 bytes): the file is truncated"),
        ("offsets_past_eof", safetensors_bytes(past_eof, b"\0\0"),
         f"tensor data ends at byte {8 + len(past_eof) + 8} but the file has {8 + len(past_eof) + 2} "
         "bytes: the file is truncated"),
        ("overlapping_offsets", safetensors_bytes({"a": _entry([2], [0, 4]), "b": _entry([2], [2, 6])}, bytes(6)),
         "tensors 'a' and 'b' overlap (their data_offsets share bytes)"),
        ("absurd_shape", safetensors_bytes({"w": _entry([2**40, 2**40], [0, 2])}, b"\0\0"),
         "tensor 'w' declares 'F16' [1099511627776, 1099511627776] (more than 10^20 bytes) but its "
         "data_offsets span 2 bytes"),
        ("shape_larger_than_its_bytes", safetensors_bytes({"w": _entry([3, 4], [0, 8])}, bytes(8)),
         "tensor 'w' declares 'F16' [3, 4] (24 bytes) but its data_offsets span 8 bytes"),
        ("negative_dimension", safetensors_bytes({"w": _entry([-1], [0, 2])}, b"\0\0"),
         "tensor 'w' has a malformed header entry (shape is not a list of whole numbers >= 0)"),
        ("shape_as_text", safetensors_bytes({"w": _entry("[1]", [0, 2])}, b"\0\0"),
         "tensor 'w' has a malformed header entry (shape is not a list of whole numbers >= 0)"),
        ("fractional_dimension", safetensors_bytes({"w": _entry([1.5], [0, 2])}, b"\0\0"),
         "tensor 'w' has a malformed header entry (shape is not a list of whole numbers >= 0)"),
        ("seventeen_dimensions", safetensors_bytes({"w": _entry([1] * 17, [0, 2])}, b"\0\0"),
         "tensor 'w' has a malformed header entry (17 dimensions, more than 16)"),
        ("offsets_as_text", safetensors_bytes({"w": _entry([1], ["0", "1e999"])}, b"\0\0"),
         "tensor 'w' has a malformed header entry (data_offsets is not [begin, end])"),
        ("offsets_backwards", safetensors_bytes({"w": _entry([1], [4, 2])}, bytes(4)),
         "tensor 'w' has a malformed header entry (data_offsets [4, 2] do not run forwards from 0)"),
        ("dtype_not_text", safetensors_bytes({"w": _entry([1], [0, 2], dtype=16)}, b"\0\0"),
         "tensor 'w' has a malformed header entry (dtype is not text)"),
        ("entry_not_an_object", safetensors_bytes({"w": [1, 2]}),
         "tensor 'w' has a malformed header entry (not an object)"),
        ("newlines_in_a_long_name", safetensors_bytes({"a\n" * 40: [1]}),
         "tensor 'a\\na\\na\\na\\na\\na\\na\\na\\na\\na\\na\\na\\na\\na\\na\\na\\na\\na\\na\\na\\na\\na\\na\\na\\na"
         "\\na\\na\\na\\na\\na\\n...' has a malformed header entry (not an object)"),
        ("header_not_an_object", safetensors_bytes(b"[]"), "header is JSON but not an object"),
        ("header_not_utf8", safetensors_bytes(b'{"\xff": 1}'), "unreadable header: JSON is not valid UTF-8 (byte 2)"),
        ("header_not_json", safetensors_bytes(b"{abc}"),
         "unreadable header: not valid JSON (Expecting property name enclosed in double quotes: "
         "line 1 column 2 (char 1))"),
        ("three_bytes", b"\x01\x02\x03", "truncated safetensors file (3 bytes, no header length)"),
        ("empty", b"", "truncated safetensors file (0 bytes, no header length)"),
    ]


BROKEN = broken_header_cases()


def readable_metadata_cases() -> list[tuple[str, object, list[str]]]:
    """(case, __metadata__ as written, the problems recorded) for files that stay usable."""
    meta = kohya_metadata("sdxl", "meta")

    def with_(**changes):
        return {**meta, **{k.replace("__", "."): v for k, v in changes.items()}}

    return [
        ("metadata_not_an_object", [1, 2], ["__metadata__ is not an object; ignored"]),
        ("tag_frequency_nested", with_(ss_tag_frequency=nested(1000)),
         ["ss_tag_frequency: JSON is nested 1000 levels deep (limit 64); training tags ignored"]),
        ("tag_frequency_1e999", with_(ss_tag_frequency='{"f": {"x": 1e999}}'),
         ["ss_tag_frequency: number 1e999 is out of range (not a finite float); training tags ignored"]),
        ("tag_frequency_nan", with_(ss_tag_frequency='{"f": {"x": NaN}}'),
         ["ss_tag_frequency: NaN is not a JSON number (only finite numbers are accepted); training tags ignored"]),
        ("tag_frequency_a_list", with_(ss_tag_frequency="[1, 2]"),
         ["ss_tag_frequency is not an object of folders; training tags ignored"]),
        ("datasets_nested", with_(ss_datasets=nested(200)),
         ["ss_datasets: JSON is nested 200 levels deep (limit 64); class tokens ignored"]),
        ("dim_1e999", with_(ss_network_dim="1e999"),
         ["ss_network_dim '1e999' is not a whole number from 0 to 65536; ignored"]),
        ("alpha_nan", with_(ss_network_alpha="NaN"),
         ["ss_network_alpha 'NaN' is not a number from 0 to 65536; ignored"]),
        ("alpha_negative", with_(ss_network_alpha="-1"),
         ["ss_network_alpha '-1' is not a number from 0 to 65536; ignored"]),
        ("clip_skip_inf", with_(ss_clip_skip="inf"),
         ["ss_clip_skip 'inf' is not a whole number from 0 to 24; ignored"]),
        ("clip_skip_digits", with_(ss_clip_skip="9" * 400),
         ["ss_clip_skip '9999999999999999999999999999999999999999' is not a whole number from 0 to 24; ignored"]),
        ("title_100k_characters", with_(modelspec__title="t" * 100_000),
         ["modelspec.title is longer than 300 characters; cut"]),
        ("trigger_phrase_10000_words", with_(modelspec__trigger_phrase=", ".join(f"w{i}" for i in range(10_000))),
         ["10000 trigger words; the first 50 kept"]),
        ("metadata_numbers_and_objects", {"ss_network_dim": 8, "ss_tag_frequency": {"f": {"castle": 3}}}, []),
    ]


READABLE = readable_metadata_cases()


# ----------------------------------------------------------------------------- sidecar corpus
def sidecar_cases(outside: Path) -> list[tuple[str, dict[str, bytes | Path], list[str]]]:
    """(stem, {sidecar suffix: bytes, or a Path to link to}, the problems recorded)."""
    big_words = json.dumps({"trainedWords": [f"word {i}" for i in range(10_000)]}).encode()
    return [
        ("civitai_nested", {".civitai.info": nested(1000).encode()},
         ["civitai_nested.civitai.info: JSON is nested 1000 levels deep (limit 64); ignored"]),
        ("lm_1e999", {".metadata.json": b'{"base_model": "SDXL 1.0", "sha256": 1e999}'},
         ["lm_1e999.metadata.json: number 1e999 is out of range (not a finite float); ignored"]),
        ("a1111_nan", {".json": b'{"preferred weight": NaN}'},
         ["a1111_nan.json: NaN is not a JSON number (only finite numbers are accepted); ignored"]),
        ("a1111_weight", {".json": b'{"preferred weight": -50, "sd version": "SDXL"}'},
         ["a1111_weight.json: preferred weight should be a number from -10 to 10, found -50; ignored"]),
        ("tips_nested", {".metadata.json": json.dumps({"usage_tips": nested(500)}).encode()},
         ["tips_nested.metadata.json: usage_tips: JSON is nested 500 levels deep (limit 64); ignored"]),
        ("tips_text_number", {".metadata.json": json.dumps({"usage_tips": '{"strength": "1e999"}'}).encode()},
         ["tips_text_number.metadata.json usage_tips: strength should be a number from -10 to 10, "
          "found '1e999'; ignored"]),
        ("tips_huge", {".metadata.json": json.dumps({"usage_tips": json.dumps(
            {"strength": 1e308, "strength_min": -1e308, "clip_skip": 2.5})}).encode()},
         ["tips_huge.metadata.json usage_tips: strength should be a number from -10 to 10, found 1e+308; ignored",
          "tips_huge.metadata.json usage_tips: strength_min should be a number from -10 to 10, found -1e+308; "
          "ignored",
          "tips_huge.metadata.json usage_tips: clip_skip should be a whole number from 0 to 24, found 2.5; ignored"]),
        ("stats_huge", {".civitai.info": b'{"stats": {"downloadCount": 1e300, "thumbsUpCount": -5}}'},
         ["stats_huge.civitai.info stats: downloadCount should be a whole number from 0 to 1000000000000, "
          "found 1e+300; ignored",
          "stats_huge.civitai.info stats: thumbsUpCount should be a whole number from 0 to 1000000000000, "
          "found -5; ignored"]),
        ("many_words", {".civitai.info": big_words},
         ["many_words.civitai.info: trainedWords has 10000 entries; the first 200 kept",
          "200 trigger words; the first 50 kept"]),
        ("long_word", {".civitai.info": json.dumps({"trainedWords": ["x" * 1000, "ok"]}).encode()},
         ["long_word.civitai.info: trainedWords has entries longer than 200 characters; skipped"]),
        ("latin1_notes", {".txt": "café notes".encode("latin-1")},
         ["latin1_notes.txt: not valid UTF-8 (byte 3); unreadable bytes replaced"]),
        ("bom_json", {".json": b'\xef\xbb\xbf{"sd version": "SDXL", "activation text": "bom trigger"}'}, []),
        ("huge_txt", {".txt": b"x" * (MAX_SIDECAR_BYTES + 1)},
         [f"huge_txt.txt: larger than {MAX_SIDECAR_BYTES} bytes; ignored"]),
        ("long_txt", {".txt": b"y" * 30_000}, ["long_txt.txt: longer than 20000 characters; cut"]),
        ("linked_out", {".txt": outside / "secret.txt", ".civitai.info": outside / "secret.json"},
         ["linked_out.civitai.info: a link to a file outside this folder; not read",
          "linked_out.txt: a link to a file outside this folder; not read"]),
    ]


def write_sidecar_case(folder: Path, stem: str, sidecars: dict[str, bytes | Path], seed: int) -> None:
    write_lora(folder / f"{stem}.safetensors", "kohya", "sdxl", seed=seed)
    for suffix, content in sidecars.items():
        if isinstance(content, Path):
            os.symlink(content, folder / f"{stem}{suffix}")
        else:
            (folder / f"{stem}{suffix}").write_bytes(content)


@pytest.fixture
def outside(tmp_path) -> Path:
    """Files outside the library that a link in it may point to."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("root password")
    (folder / "secret.json").write_text('{"trainedWords": ["secret"]}')
    return folder


def write_good_loras(folder: Path) -> None:
    write_lora(folder / "good" / "film_photo_xl.safetensors", "peft", "sdxl", seed=11,
               metadata=kohya_metadata("sdxl", "film_photo", tags={"film": 30, "photo": 20}, trigger="analog film photo"))
    (folder / "good" / "film_photo_xl.civitai.info").write_text(json.dumps({
        "id": 1, "baseModel": "SDXL 1.0", "trainedWords": ["analog film photo"],
        "stats": {"downloadCount": 5000, "thumbsUpCount": 90, "thumbsDownCount": 1},
        "model": {"name": "Analog Film", "tags": ["photography"], "nsfw": False}}))
    write_lora(folder / "good" / "castle_detail_xl.safetensors", "kohya", "sdxl", seed=12,
               metadata=kohya_metadata("sdxl", "castle_detail", tags={"castle": 40, "towers": 10}))


def _by_name(library) -> dict:
    return {e.name: e for e in library.entries.values()}


@pytest.mark.timeout(60)  # a hang (a quadratic parser, a blocking read) fails here
# ----------------------------------------------------------------------------- safetensors
@pytest.mark.parametrize("case, payload, reason", BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_header_is_a_recorded_problem_of_its_file(tmp_path, case, payload, reason):
    (tmp_path / f"{case}.safetensors").write_bytes(payload)
    write_lora(tmp_path / "good.safetensors", "kohya", "sdxl")
    entries = _by_name(scan_library([tmp_path]))
    bad = entries[f"{case}.safetensors"]
    assert (bad.readable, bad.problems) == (False, [reason])
    assert entries["good.safetensors"].readable and entries["good.safetensors"].problems == []


@pytest.mark.timeout(60)  # a hang (a quadratic parser, a blocking read) fails here
@pytest.mark.parametrize("case, payload, reason", BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_checkpoint_header_is_one_error_naming_the_file(tmp_path, case, payload, reason):
    path = tmp_path / f"{case}.safetensors"
    path.write_bytes(payload)
    with pytest.raises(CheckpointFileError) as caught:
        read_safetensors_metadata(path, name=f"SDXL/{case}.safetensors")
    assert str(caught.value) == f"checkpoint SDXL/{case}.safetensors: {reason}"
    assert "\n" not in str(caught.value)


@pytest.mark.timeout(60)  # a hang (a quadratic parser, a blocking read) fails here
@pytest.mark.parametrize("case, metadata, problems", READABLE, ids=[c[0] for c in READABLE])
def test_hostile_metadata_is_skipped_with_a_problem_and_the_lora_stays_usable(tmp_path, case, metadata, problems):
    (tmp_path / f"{case}.safetensors").write_bytes(small_lora_bytes(metadata))
    entry = _by_name(scan_library([tmp_path]))[f"{case}.safetensors"]
    assert entry.readable and (entry.base, entry.layout, entry.rank) == ("sdxl", "kohya", 2)
    assert entry.problems == problems
    assert len(entry.title) <= 300 and len(entry.triggers) <= 50
    json.dumps(entry.to_dict(), allow_nan=False)  # only finite numbers reach the index cache


def test_metadata_that_is_not_text_is_kept_as_json(tmp_path):
    (tmp_path / "numbers.safetensors").write_bytes(small_lora_bytes(
        {"ss_network_dim": 8, "ss_tag_frequency": {"f": {"castle": 3}}}))
    entry = _by_name(scan_library([tmp_path]))["numbers.safetensors"]
    assert entry.tags == ["castle"] and entry.triggers == []   # training tags are never triggers


def test_an_enormous_tag_list_keeps_the_40_most_frequent(tmp_path):
    tags = {f"tag{i}": i for i in range(100_000)}
    write_lora(tmp_path / "tags.safetensors", "kohya", "sdxl",
               metadata=kohya_metadata("sdxl", "tags", tags=tags))
    entry = _by_name(scan_library([tmp_path]))["tags.safetensors"]
    assert entry.tags == [f"tag{i}" for i in range(99_999, 99_959, -1)] and entry.problems == []


def test_unknown_dtype_is_noted_not_fatal(tmp_path):
    (tmp_path / "q7.safetensors").write_bytes(safetensors_bytes(
        {KOHYA_KEY + ".lora_down.weight": _entry([2, 2048], [0, 3], dtype="Q7")}, bytes(3)))
    entry = _by_name(scan_library([tmp_path]))["q7.safetensors"]
    assert entry.readable and entry.problems == ["unknown dtype 'Q7': those tensors' sizes were not checked"]


@pytest.mark.timeout(60)  # a hang (a quadratic parser, a blocking read) fails here
# ----------------------------------------------------------------------------- sidecars
def test_each_hostile_sidecar_is_a_problem_of_its_lora(tmp_path, outside):
    library_dir = tmp_path / "loras"
    library_dir.mkdir()
    cases = sidecar_cases(outside)
    for seed, (stem, sidecars, _problems) in enumerate(cases):
        write_sidecar_case(library_dir, stem, sidecars, seed)
    entries = _by_name(scan_library([library_dir]))
    for stem, _sidecars, problems in cases:
        entry = entries[f"{stem}.safetensors"]
        assert entry.readable and entry.base == "sdxl", stem
        assert entry.problems == problems, stem
    info = {stem: entries[f"{stem}.safetensors"].info for stem, _s, _p in cases}
    assert info["latin1_notes"].notes == "caf\ufffd notes"
    assert info["bom_json"].activation_text == "bom trigger" and info["bom_json"].a1111_version == "SDXL"
    assert len(info["many_words"].trained_words) == 200
    assert info["long_word"].trained_words == ["ok"]
    assert info["a1111_weight"].preferred_weight == 0.0 and info["tips_huge"].usage_tips == {}
    assert info["stats_huge"].downloads == 0 and info["stats_huge"].thumbs_up == 0
    assert len(info["long_txt"].notes) == 20_000 and info["huge_txt"].notes == ""
    assert info["linked_out"].notes == "" and "secret" not in entries["linked_out.safetensors"].triggers


def test_sidecar_links_next_to_the_models_real_file_are_read(tmp_path):
    """A library linked in from another drive, sidecar links included, still works."""
    drive = tmp_path / "drive"
    write_lora(drive / "shared.safetensors", "kohya", "sdxl")
    (drive / "shared.civitai.info").write_text(json.dumps({"baseModel": "Pony", "trainedWords": ["shared"]}))
    library_dir = tmp_path / "loras"
    library_dir.mkdir()
    os.symlink(drive / "shared.safetensors", library_dir / "shared.safetensors")
    os.symlink(drive / "shared.civitai.info", library_dir / "shared.civitai.info")
    entry = _by_name(scan_library([library_dir]))["shared.safetensors"]
    assert (entry.variant, entry.triggers, entry.problems) == ("pony", ["shared"], [])


# ----------------------------------------------------------------------------- special files
@pytest.mark.timeout(60)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs need a POSIX system")
def test_fifos_and_devices_in_the_folder_are_never_opened(tmp_path):
    write_lora(tmp_path / "good.safetensors", "kohya", "sdxl")
    os.mkfifo(tmp_path / "pipe.safetensors")        # a reader would wait for a writer forever
    os.mkfifo(tmp_path / "good.txt")
    os.mkfifo(tmp_path / "good.civitai.info")
    os.symlink(tmp_path / "pipe.safetensors", tmp_path / "linked_pipe.safetensors")
    os.symlink("/dev/zero", tmp_path / "zero.safetensors")
    library = scan_library([tmp_path])
    assert list(_by_name(library)) == ["good.safetensors"]
    entry = library.sorted_entries()[0]
    assert entry.readable and entry.problems == [] and entry.info.notes == ""
    assert library.compute_hashes() == 1


@pytest.mark.timeout(60)
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_a_link_to_a_proc_file_is_not_read(tmp_path):
    os.symlink("/proc/self/status", tmp_path / "proc.safetensors")
    entry = _by_name(scan_library([tmp_path]))["proc.safetensors"]
    assert (entry.readable, entry.problems) == (False, ["truncated safetensors file (0 bytes, no header length)"])


def test_a_folder_tree_1500_levels_deep_is_scanned(tmp_path):
    chain = [str(tmp_path / "loras")]
    os.mkdir(chain[0])
    try:
        for _ in range(1500):  # one level at a time: os.makedirs itself recurses once per level
            chain.append(chain[-1] + "/d")
            os.mkdir(chain[-1])
        write_lora(Path(chain[-1]) / "deep.safetensors", "kohya", "sdxl")
        library = scan_library([chain[0]])
        assert [e.name for e in library.entries.values()] == ["d/" * 1500 + "deep.safetensors"]
    finally:  # bottom up, without recursion: pytest's own clean-up (shutil.rmtree) recurses per level
        for folder in reversed(chain):
            for name in os.listdir(folder):
                if name != "d":
                    os.unlink(os.path.join(folder, name))
            os.rmdir(folder)


def _four_loras_with_sidecars(folder: Path) -> None:
    for n in range(4):
        write_lora(folder / f"lora{n}.safetensors", "kohya", "sdxl", seed=n)
        (folder / f"lora{n}.civitai.info").write_text(json.dumps({"trainedWords": [f"w{n}"]}))


def test_loras_that_vanish_during_the_scan_are_left_out(tmp_path):
    _four_loras_with_sidecars(tmp_path)

    def remove_everything(done, total):  # called after the first file was read
        for path in tmp_path.iterdir():
            path.unlink(missing_ok=True)

    library = scan_library([tmp_path], progress=remove_everything)
    assert len(library.entries) == 1 and library.problems == []
    entry = library.sorted_entries()[0]
    assert entry.readable and entry.problems == [] and entry.triggers == [f"w{entry.name[4]}"]


def test_sidecars_that_vanish_during_the_scan_are_left_out(tmp_path):
    _four_loras_with_sidecars(tmp_path)

    def remove_sidecars(done, total):
        for path in tmp_path.glob("*.civitai.info"):
            path.unlink(missing_ok=True)

    library = scan_library([tmp_path], progress=remove_sidecars)
    entries = library.sorted_entries()
    assert len(entries) == 4 and all(e.readable and e.problems == [] for e in entries)
    assert sorted(len(e.triggers) for e in entries) == [0, 0, 0, 1]


# ----------------------------------------------------------------------------- the whole corpus
def write_corpus(library_dir: Path, outside: Path) -> dict[str, list[str]]:
    """Every case above in one library; returns {file name: its recorded problems}."""
    expected: dict[str, list[str]] = {}
    for case, payload, reason in BROKEN:
        (library_dir / "bad" / f"{case}.safetensors").parent.mkdir(parents=True, exist_ok=True)
        (library_dir / "bad" / f"{case}.safetensors").write_bytes(payload)
        expected[f"bad/{case}.safetensors"] = [reason]
    for case, metadata, problems in READABLE:
        (library_dir / "meta" / f"{case}.safetensors").parent.mkdir(parents=True, exist_ok=True)
        (library_dir / "meta" / f"{case}.safetensors").write_bytes(small_lora_bytes(metadata))
        expected[f"meta/{case}.safetensors"] = problems
    (library_dir / "side").mkdir()
    for seed, (stem, sidecars, problems) in enumerate(sidecar_cases(outside)):
        write_sidecar_case(library_dir / "side", stem, sidecars, seed)
        expected[f"side/{stem}.safetensors"] = problems
    write_good_loras(library_dir)
    expected["good/film_photo_xl.safetensors"] = ["UNet keys use diffusers/PEFT names (unet.*.to_q.lora_A) "
                                                  "that ComfyUI's LoRA loader does not map: only the "
                                                  "text-encoder part would apply; convert the file to kohya "
                                                  "format (diffusers' convert_state_dict_to_kohya)"]
    expected["good/castle_detail_xl.safetensors"] = []
    if hasattr(os, "mkfifo"):
        os.mkfifo(library_dir / "bad" / "pipe.safetensors")
    return expected


@pytest.mark.timeout(120)
def test_a_library_of_the_whole_corpus_scans_lists_every_problem_and_recommends(tmp_path, outside):
    library_dir = tmp_path / "loras"
    library_dir.mkdir()
    expected = write_corpus(library_dir, outside)
    library = scan_library([library_dir], cache_path=tmp_path / "cache" / "index.json")
    assert {e.name: e.problems for e in library.entries.values()} == expected
    assert library.problems == []
    index = LoraIndex(library)
    unreadable = sorted((f"bad/{case}.safetensors" for case, _p, _r in BROKEN), key=str.lower)
    assert index.unreadable == unreadable
    rec = recommend(index, analyze_prompt("analog film photo of a street"), family="sdxl", max_loras=2)
    assert rec.picks[0].name == "good/film_photo_xl.safetensors"
    assert rec.notes == [f"left out {len(BROKEN)} LoRA file(s) that cannot be read: {', '.join(unreadable[:3])} "
                         f"and {len(BROKEN) - 3} more (`kubik loras scan <loras folder>` lists why)"]
    rec = recommend(index, analyze_prompt("a gothic castle with towers"), family="sdxl")
    assert "good/castle_detail_xl.safetensors" in [c.name for c in rec.picks]
    for pick in rec.picks:
        assert all(-10 <= s <= 10 for s in (pick.strength_model, pick.strength_clip))
    # The cache written from this library is strict JSON and gives back every entry unchanged.
    bounded_loads((tmp_path / "cache" / "index.json").read_bytes(), max_bytes=2**30)
    again = scan_library([library_dir], cache_path=tmp_path / "cache" / "index.json")
    assert (again.stats.read, again.stats.cached) == (0, len(expected))
    assert {e.name: e.problems for e in again.entries.values()} == expected


def test_kubik_loras_scan_of_the_corpus_exits_0_with_strict_json(tmp_path, outside, capsys):
    library_dir = tmp_path / "loras"
    library_dir.mkdir()
    expected = write_corpus(library_dir, outside)
    assert main(["loras", "scan", str(library_dir), "--no-cache", "--no-hash", "--json"]) == 0
    data = bounded_loads(capsys.readouterr().out)
    assert {f["name"]: f["problems"] for f in data["files"]} == expected


def test_hostile_files_added_to_a_cached_library_lose_nothing(tmp_path, outside):
    library_dir = tmp_path / "loras"
    write_good_loras(library_dir)
    cache = tmp_path / "index.json"
    first = scan_library([library_dir], cache_path=cache)
    assert first.compute_hashes() == 2
    hashes = {e.name: (e.sha256, e.autov3) for e in first.entries.values()}
    (library_dir / "bad").mkdir()
    for case, payload, _reason in BROKEN:
        (library_dir / "bad" / f"{case}.safetensors").write_bytes(payload)
    second = scan_library([library_dir], cache_path=cache)
    assert (second.stats.read, second.stats.cached) == (len(BROKEN), 2)
    assert {e.name: (e.sha256, e.autov3) for e in second.entries.values() if e.name in hashes} == hashes
    third = scan_library([library_dir], cache_path=cache)
    assert (third.stats.read, third.stats.cached) == (0, len(BROKEN) + 2)


@pytest.mark.parametrize("cache_text", [nested(5000), '{"version": 1, "files": {"x": ' + nested(100) + "}}",
                                        '{"version": 1, "files": [1e999]}'])
def test_a_hostile_index_cache_is_rebuilt(tmp_path, cache_text):
    write_good_loras(tmp_path / "loras")
    cache = tmp_path / "index.json"
    cache.write_text(cache_text)
    library = scan_library([tmp_path / "loras"], cache_path=cache)
    assert library.stats.read == 2 and json.loads(cache.read_text())["version"] == CACHE_VERSION


def test_a_damaged_cache_entry_is_read_again_and_the_others_are_kept(tmp_path):
    write_good_loras(tmp_path / "loras")
    cache = tmp_path / "index.json"
    scan_library([tmp_path / "loras"], cache_path=cache)
    data = json.loads(cache.read_text())
    film = next(p for p in data["files"] if p.endswith("film_photo_xl.safetensors"))
    data["files"][film]["entry"]["triggers"] = 5
    cache.write_text(json.dumps(data))
    library = scan_library([tmp_path / "loras"], cache_path=cache)
    assert (library.stats.read, library.stats.cached) == (1, 1)
    assert _by_name(library)["good/film_photo_xl.safetensors"].triggers == ["analog film photo"]


# ----------------------------------------------------------------------------- nodes and the CLI
def stand_in_folder_paths(monkeypatch, tmp_path, loras: Path, checkpoints: Path) -> None:
    """ComfyUI's folder_paths as the bridge asks it (lies outside the project, so a stand-in)."""
    module = types.ModuleType("folder_paths")
    roots = {"loras": loras, "checkpoints": checkpoints}

    def get_full_path(folder, name):
        path = roots[folder] / os.path.relpath(os.path.join("/", name), "/")  # ComfyUI's own normalisation
        return str(path) if path.is_file() else None

    module.get_full_path = get_full_path
    module.get_folder_paths = lambda folder: [str(roots[folder])]
    module.get_filename_list = lambda folder: sorted(
        str(p.relative_to(roots[folder])) for p in roots[folder].rglob("*.safetensors"))
    module.get_user_directory = lambda: str(tmp_path / "user")
    module.get_output_directory = lambda: str(tmp_path / "output")
    monkeypatch.setitem(sys.modules, "folder_paths", module)


class SDXLModel:
    """A ComfyUI MODEL as an SDXL checkpoint loader returns it (a ModelPatcher whose ``.model``
    is comfy.model_base.SDXL holding supported_models.SDXL), with the class names ComfyUI has."""

    def __init__(self):
        base_model = type("BaseModel", (), {})
        self.model = type("SDXL", (base_model,), {})()
        self.model.model_config = type("SDXL", (), {"unet_config": {"context_dim": 2048}})()
        self.model.model_type = types.SimpleNamespace(name="EPS")


def analyze_in_pack(pack, text):
    return importlib.import_module(f"{pack.__name__}.kubik_core.prompting").analyze_prompt(text)


def _recommender_inputs(analysis, **changes):
    return {**dict(analysis=analysis, max_loras=3, priority="balanced", family="auto", content="safe",
                   blocklist="", weight_semantic=0.4, weight_keyword=0.3, weight_popularity=0.2,
                   weight_history=0.0), **changes}


@pytest.mark.timeout(120)
def test_recommender_node_over_the_corpus_with_a_crafted_checkpoint(pack, run_node, tmp_path, outside,
                                                                    monkeypatch):
    loras = tmp_path / "loras"
    loras.mkdir()
    write_corpus(loras, outside)
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "SDXL").mkdir(parents=True)
    (checkpoints / "SDXL" / "crafted.safetensors").write_bytes(BROKEN[0][1])
    stand_in_folder_paths(monkeypatch, tmp_path, loras, checkpoints)
    graph = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SDXL/crafted.safetensors"}},
             "7": {"class_type": "KubikLoraRecommender", "inputs": {"model": ["4", 0]}}}
    analysis = analyze_in_pack(pack, "analog film photo of a street")
    stack, triggers, reasons = run_node("KubikLoraRecommender", **_recommender_inputs(
        analysis, model=SDXLModel(), prompt=graph, unique_id="7"))
    assert stack.items[0].name == "good/film_photo_xl.safetensors" and "analog film photo" in triggers
    assert ("- note: model: could not read the metadata of checkpoint SDXL/crafted.safetensors (unreadable "
            "header: JSON is nested 1002 levels deep (limit 64)); the family is detected from its name only"
            ) in reasons.splitlines()
    assert f"- note: left out {len(BROKEN)} LoRA file(s) that cannot be read: bad/absurd_shape.safetensors, " \
           "bad/dtype_not_text.safetensors, bad/empty.safetensors and" in reasons
    assert str(tmp_path) not in reasons


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), -1.0])
def test_recommender_node_refuses_weights_that_are_not_numbers(pack, run_node, weight):
    analysis = analyze_in_pack(pack, "a castle")
    with pytest.raises(ValueError) as caught:
        run_node("KubikLoraRecommender", **_recommender_inputs(analysis, family="sdxl", weight_keyword=weight))
    assert str(caught.value) == f"weight_keyword: should be a number from 0 to 1, got {weight!r}"


@pytest.mark.parametrize("analysis", [5, ["a castle"]])
def test_recommender_node_refuses_an_analysis_of_another_kind(run_node, tmp_path, monkeypatch, analysis):
    write_good_loras(tmp_path / "loras")
    monkeypatch.setenv("KUBIK_LORAS_DIR", str(tmp_path / "loras"))
    monkeypatch.setenv("KUBIK_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ValueError) as caught:
        run_node("KubikLoraRecommender", **_recommender_inputs(analysis, family="sdxl"))
    assert str(caught.value) == (f"analysis: expected a prompt analysis, found {type(analysis).__name__}; "
                                 "connect Kubik Prompt Analyzer")


def test_recommender_reads_a_hostile_analysis_dict_as_far_as_it_is_usable(tmp_path):
    write_good_loras(tmp_path / "loras")
    index = LoraIndex(scan_library([tmp_path / "loras"]))
    analysis = {"prompt": "analog film photo", "complexity": {"overall": float("inf")},
                "concepts": {"subject": [1, {"x": 2}, "film"], "style": "not a list"}, "style": 7}
    rec = recommend(index, analysis, family="sdxl")
    assert rec.picks[0].name == "good/film_photo_xl.safetensors"
    assert rec.picks[0].strength_reason.endswith("prompt complexity 0.50")  # inf read as unknown (0.5)


_FIX = "; connect Kubik LoRA Recommender or Kubik LoRA Stack, or give the JSON of a stack"
HOSTILE_STACKS = [
    ("json_nested", '{"items": ' + nested(1000) + "}",
     "lora_stack: not a usable stack JSON (JSON is nested 1001 levels deep (limit 64))" + _FIX),
    ("json_1e999", '{"items": [{"name": "a.safetensors", "strength_model": 1e999}]}',
     "lora_stack: not a usable stack JSON (number 1e999 is out of range (not a finite float))" + _FIX),
    ("json_nan", '{"items": [{"name": "a.safetensors", "strength_clip": NaN}]}',
     "lora_stack: not a usable stack JSON (NaN is not a JSON number (only finite numbers are accepted))" + _FIX),
    ("dict_nested_items", {"items": [[[[[]]]]]}, "lora_stack: item 1 should be an object, found list" + _FIX),
    ("dict_inf_strength", {"items": [{"name": "a.safetensors", "strength_model": float("inf")}]},
     "lora_stack: item 1: strength_model should be a number from -10 to 10, found inf" + _FIX),
    ("dict_nan_strength", {"items": [{"name": "a.safetensors", "strength_clip": float("nan")}]},
     "lora_stack: item 1: strength_clip should be a number from -10 to 10, found nan" + _FIX),
    ("dict_text_strength", {"items": [{"name": "a.safetensors", "strength_model": "1e999"}]},
     "lora_stack: item 1: strength_model should be a number from -10 to 10, found '1e999'" + _FIX),
    ("dict_huge_strength", {"items": [{"name": "a.safetensors", "strength_model": -50}]},
     "lora_stack: item 1: strength_model should be a number from -10 to 10, found -50" + _FIX),
    ("parent_folder", {"items": [{"name": "../../user/secret.safetensors"}]},
     "lora_stack: item 1: LoRA name '../../user/secret.safetensors' leaves the loras folder; use a name "
     "from ComfyUI's LoRA list (relative to the loras folder)" + _FIX),
    ("backslash_parent", {"items": [{"name": "sub\\..\\..\\x.safetensors"}]},
     "lora_stack: item 1: LoRA name 'sub\\\\..\\\\..\\\\x.safetensors' leaves the loras folder; use a name "
     "from ComfyUI's LoRA list (relative to the loras folder)" + _FIX),
    ("absolute", {"items": [{"name": "/etc/passwd"}]},
     "lora_stack: item 1: LoRA name '/etc/passwd' leaves the loras folder; use a name from ComfyUI's LoRA "
     "list (relative to the loras folder)" + _FIX),
    ("drive", {"items": [{"name": "C:evil.safetensors"}]},
     "lora_stack: item 1: LoRA name 'C:evil.safetensors' leaves the loras folder; use a name from "
     "ComfyUI's LoRA list (relative to the loras folder)" + _FIX),
    ("name_not_text", {"items": [{"name": ["a"]}]},
     "lora_stack: item 1: a LoRA name should be non-empty text" + _FIX),
    ("too_many_items", {"items": [{"name": "a.safetensors"}] * 100},
     "lora_stack: 100 items; a stack holds at most 64" + _FIX),
    ("items_not_a_list", {"items": "a.safetensors"}, "lora_stack: items should be a list, found str" + _FIX),
    ("triggers_not_texts", {"items": [{"name": "a.safetensors", "triggers": [1]}]},
     "lora_stack: item 1: triggers should be a list of texts" + _FIX),
    ("not_a_stack", 42, "lora_stack: expected a KUBIK_LORA_STACK from Kubik LoRA Recommender or Kubik "
                        "LoRA Stack, found int"),
]


@pytest.fixture
def lora_env(tmp_path, monkeypatch) -> Path:
    write_good_loras(tmp_path / "loras")
    monkeypatch.setenv("KUBIK_LORAS_DIR", str(tmp_path / "loras"))
    monkeypatch.setenv("KUBIK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "loras"


@pytest.mark.parametrize("case, value, message", HOSTILE_STACKS, ids=[c[0] for c in HOSTILE_STACKS])
def test_apply_lora_stack_refuses_a_hostile_stack_naming_the_input(run_node, lora_env, case, value, message):
    with pytest.raises(ValueError) as caught:
        run_node("KubikApplyLoraStack", model=object(), clip=object(), lora_stack=value, add_trigger_words=True)
    assert str(caught.value) == message


@pytest.mark.parametrize("node", ["KubikExplain", "KubikLoraStack"])
def test_other_nodes_taking_a_stack_refuse_it_the_same_way(run_node, lora_env, node):
    value = {"items": [{"name": "../x.safetensors"}]}
    inputs = dict(verbosity="standard") if node == "KubikExplain" else dict(
        lora_1="None", strength_model_1=1.0, strength_clip_1=1.0, lora_2="None", strength_model_2=1.0,
        strength_clip_2=1.0, lora_3="None", strength_model_3=1.0, strength_clip_3=1.0)
    with pytest.raises(ValueError, match=r"^lora_stack: item 1: LoRA name '\.\./x\.safetensors' leaves"):
        run_node(node, lora_stack=value, **inputs)


def test_apply_lora_stack_names_a_lora_that_is_not_in_the_folders(run_node, lora_env):
    stack = {"items": [{"name": "nope.safetensors"}, {"name": "good/castle_detail_xl.safetensors"}]}
    with pytest.raises(ValueError) as caught:
        run_node("KubikApplyLoraStack", model=object(), clip=object(), lora_stack=json.dumps(stack),
                 add_trigger_words=False)
    assert str(caught.value) == ("lora_stack: LoRA 'nope.safetensors' is not in ComfyUI's loras folders; "
                                 "rescan by re-running the recommender, or remove it from the stack")


def test_a_valid_stack_json_reaches_comfyuis_loader(run_node, lora_env):
    """Outside ComfyUI the loader is missing: the stack got past every check to it."""
    stack = {"items": [{"name": "good/castle_detail_xl.safetensors", "strength_model": 0.8,
                        "path": "/etc/passwd", "future_field": 1}]}
    with pytest.raises(RuntimeError, match="^lora_stack: applying LoRAs needs ComfyUI"):
        run_node("KubikApplyLoraStack", model=object(), clip=object(), lora_stack=json.dumps(stack),
                 add_trigger_words=False)


@pytest.mark.parametrize("case, payload, reason", BROKEN[:4], ids=[c[0] for c in BROKEN[:4]])
def test_apply_lora_stack_checks_a_lora_file_before_comfyui_loads_it(run_node, lora_env, case, payload, reason):
    (lora_env / "bad").mkdir()
    (lora_env / "bad" / f"{case}.safetensors").write_bytes(payload)
    stack = {"items": [{"name": f"bad/{case}.safetensors", "strength_model": 0.5}]}
    with pytest.raises(ValueError) as caught:
        run_node("KubikApplyLoraStack", model=object(), clip=object(), lora_stack=stack, add_trigger_words=False)
    assert str(caught.value) == (f"lora_stack: LoRA bad/{case}.safetensors: {reason}; replace the file or "
                                 "remove it from the stack")


@pytest.mark.parametrize("inputs, message", [
    (dict(strength_model_1=float("nan")), "strength_model_1 should be a number from -10 to 10, found nan"),
    (dict(strength_clip_2=float("inf")), "strength_clip_2 should be a number from -10 to 10, found inf"),
    (dict(lora_1="../../secret.safetensors"),
     "lora_1: LoRA name '../../secret.safetensors' leaves the loras folder; use a name from ComfyUI's LoRA "
     "list (relative to the loras folder)"),
    (dict(lora_3="missing.safetensors"), "lora_3: 'missing.safetensors' is not in ComfyUI's loras folders"),
])
def test_lora_stack_node_refuses_hostile_widgets(run_node, lora_env, inputs, message):
    widgets = dict(lora_1="good/castle_detail_xl.safetensors", strength_model_1=1.0, strength_clip_1=1.0,
                   lora_2="None", strength_model_2=1.0, strength_clip_2=1.0, lora_3="None",
                   strength_model_3=1.0, strength_clip_3=1.0)
    with pytest.raises(ValueError) as caught:
        run_node("KubikLoraStack", **{**widgets, **inputs})
    assert str(caught.value) == message


PARAMS_WIDGETS = dict(family="auto", priority="balanced", aspect_ratio="auto", mode="AUTO", device="cpu",
                      steps=0, cfg=0.0, sampler_name="auto", scheduler="auto", width=0, height=0, guidance=0.0)


@pytest.mark.parametrize("case, payload, reason", BROKEN[:12], ids=[c[0] for c in BROKEN[:12]])
def test_parameter_optimizer_falls_back_to_the_name_of_a_crafted_checkpoint(run_node, tmp_path, monkeypatch,
                                                                            case, payload, reason):
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "SDXL").mkdir(parents=True)
    (checkpoints / "SDXL" / f"pony_{case}.safetensors").write_bytes(payload)
    stand_in_folder_paths(monkeypatch, tmp_path, tmp_path, checkpoints)
    graph = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": f"SDXL/pony_{case}.safetensors"}},
             "7": {"class_type": "KubikParameterOptimizer", "inputs": {"model": ["4", 0]}}}
    plan = run_node("KubikParameterOptimizer", **PARAMS_WIDGETS, model=SDXLModel(), prompt=graph,
                    unique_id="7")[0]
    assert plan.family == "pony"
    assert (f"model: could not read the metadata of checkpoint SDXL/pony_{case}.safetensors ({reason}); "
            "the family is detected from its name only") in plan.notes
    assert not any(str(tmp_path) in note for note in plan.notes)


@pytest.mark.parametrize("case, payload, reason", BROKEN[:6], ids=[c[0] for c in BROKEN[:6]])
def test_kubik_params_with_a_crafted_checkpoint_is_one_line_and_exit_2(tmp_path, capsys, case, payload, reason):
    path = tmp_path / "model.safetensors"
    path.write_bytes(payload)
    assert main(["params", "a cat", "--family", "auto", "--checkpoint", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"kubik params: error: checkpoint {path}: {reason}"]


# ----------------------------------------------------------------------------- a real ComfyUI server
COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
needs_comfyui = pytest.mark.skipif(not COMFYUI_DIR or not (Path(COMFYUI_DIR) / "main.py").exists(),
                                   reason="COMFYUI_DIR is not set to a ComfyUI checkout")


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """A real ComfyUI server whose loras folder holds the whole corpus and the good LoRAs."""
    from kubik_testing.comfy_server import ComfyServer
    from kubik_testing.pack import REPO

    workdir = tmp_path_factory.mktemp("comfyui")
    server = ComfyServer(Path(COMFYUI_DIR), REPO, workdir)
    outside = workdir / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("root password")
    (outside / "secret.json").write_text('{"trainedWords": ["secret"]}')
    (server.models_dir / "loras").mkdir(parents=True)
    write_corpus(server.models_dir / "loras", outside)
    server.start()
    yield server
    server.stop()


def _defaults(cls, **overrides) -> dict:
    """A freshly added node's widget values, some replaced."""
    values = {}
    for category in ("required", "optional"):
        for name, spec in cls.INPUT_TYPES().get(category, {}).items():
            options = spec[1] if len(spec) > 1 else {}
            if "default" in options:
                values[name] = options["default"]
    return {**values, **overrides}


def _execution_error(entry) -> str:
    assert entry["status"]["status_str"] == "error"
    error = next(m[1] for m in entry["status"]["messages"] if m[0] == "execution_error")
    return error["exception_message"].strip()  # ComfyUI ends it with a newline


@needs_comfyui
@pytest.mark.integration
@pytest.mark.timeout(600)
def test_in_comfyui_the_recommender_scans_the_corpus_and_names_unreadable_files(comfy, node_classes):
    workflow = {
        "1": {"class_type": "KubikPromptAnalyzer", "inputs": _defaults(
            node_classes["KubikPromptAnalyzer"], prompt="analog film photo of a street")},
        "2": {"class_type": "KubikLoraRecommender", "inputs": _defaults(
            node_classes["KubikLoraRecommender"], analysis=["1", 0], family="sdxl")},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
    }
    entry = comfy.queue(workflow)
    assert entry["status"]["status_str"] == "success", entry["status"]
    reasons = entry["outputs"]["3"]["text"][0]
    assert reasons.startswith("- good/film_photo_xl.safetensors at 0.")
    assert f"- note: left out {len(BROKEN)} LoRA file(s) that cannot be read: bad/absurd_shape.safetensors" in reasons
    assert str(comfy.models_dir) not in reasons


@needs_comfyui
@pytest.mark.integration
@pytest.mark.timeout(600)
def test_in_comfyui_a_hostile_stack_and_a_nan_strength_are_clear_errors(comfy, node_classes):
    """ComfyUI passes a dict given for a KUBIK_LORA_STACK input through unchecked, and NaN passes
    its min/max check: both reach the node, which names the input."""
    hostile = {"1": {"class_type": "KubikExplain", "inputs": {
        "verbosity": "standard", "lora_stack": {"items": [{"name": "../../user/secret.safetensors"}]}}}}
    assert _execution_error(comfy.queue(hostile)).startswith(
        "lora_stack: item 1: LoRA name '../../user/secret.safetensors' leaves the loras folder")
    nan = {"1": {"class_type": "KubikLoraStack", "inputs": _defaults(
               node_classes["KubikLoraStack"], lora_1="good/castle_detail_xl.safetensors", lora_2="None",
               lora_3="None", strength_model_1=float("nan"))},
           "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}}}
    assert _execution_error(comfy.queue(nan)) == "strength_model_1 should be a number from -10 to 10, found nan"
