"""Fuzzing the parsers of model files: safetensors headers, LoRA metadata, sidecars, stacks.

Each parser gets generated hostile input (non-finite numbers, deep nesting, wrong types, random
bytes, JSON inside strings) written to a real file, with a fixed seed and a bounded number of
examples. Whatever it gets, a parser may only answer with its value or its own one-line error,
and the values it keeps are bounded and finite, so the index cache can always hold them.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubik_core.common.bounded_json import _STRING, outside_strings
from kubik_core.loras.entry import MAX_TRIGGERS, LoraEntry, read_entry
from kubik_core.common.safetensors_file import MAX_DIMENSIONS, SafetensorsFileError, read_header
from kubik_core.loras.errors import LoraStackError
from kubik_core.loras.sidecars import (MAX_CLIP_SKIP, MAX_COUNT, MAX_ITEMS, MAX_PROMPT_CHARS,
                                       MAX_TEXT_CHARS, MAX_TITLE_CHARS, read_sidecars)
from kubik_core.loras.stack import MAX_ITEMS as MAX_STACK_ITEMS
from kubik_core.loras.stack import MAX_STRENGTH, stack_from_input

FUZZ = settings(derandomize=True, max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KOHYA_KEY = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"

# JSON-like values of every kind JSON text can hold, including what Python's json writes for
# non-finite floats (NaN, Infinity) and integers far beyond 64 bits.
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(["1e999", "-1e999", "nan", "NaN", "inf", "None", "", "[[[[", "0", "1.5"]))


def json_values(keys=st.text(max_size=6)):
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(keys, inner, max_size=5), max_leaves=24)


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def json_text(values) -> st.SearchStrategy[str]:
    """JSON text of ``values`` (NaN/Infinity as Python writes them), or brackets 0-3000 deep."""
    return values.map(json.dumps) | st.integers(0, 3000).map(deep)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _fresh(folder):
    shutil.rmtree(folder)
    folder.mkdir()
    return folder


# ----------------------------------------------------------------------------- safetensors header
def _tensor_entries():
    wellformed = st.fixed_dictionaries({
        "dtype": st.sampled_from(["F16", "F32", "BF16", "U8", "F4", "Q7"]),
        "shape": st.lists(st.integers(0, 4), max_size=3),
        "data_offsets": st.lists(st.integers(0, 64), min_size=2, max_size=2).map(sorted)})
    return wellformed | json_values(st.sampled_from(["dtype", "shape", "data_offsets", "x"]))


@FUZZ
@given(header=st.dictionaries(st.sampled_from(["__metadata__", "w", "a.weight", "b\n"]),
                              _tensor_entries() | json_values(), max_size=4),
       declared_extra=st.integers(-4, 4) | st.just(0), data=st.binary(max_size=80))
def test_fuzz_safetensors_header_structure(folder, header, declared_extra, data):
    raw = json.dumps(header).encode()
    path = _fresh(folder) / "fuzz.safetensors"
    path.write_bytes(struct.pack("<Q", max(0, len(raw) + declared_extra)) + raw + data)
    _check_header(path)


@FUZZ
@given(prefix=st.binary(min_size=0, max_size=8) | st.integers(0, 2**64 - 1).map(lambda n: struct.pack("<Q", n)),
       body=st.binary(max_size=300) | json_text(json_values()).map(str.encode))
def test_fuzz_safetensors_header_bytes(folder, prefix, body):
    path = _fresh(folder) / "fuzz.safetensors"
    path.write_bytes(prefix + body)
    _check_header(path)


def _check_header(path):
    try:
        header = read_header(path, "fuzz.safetensors")
    except SafetensorsFileError as exc:
        assert str(exc).startswith("fuzz.safetensors: ") and "\n" not in str(exc)
        return
    size = path.stat().st_size
    assert 8 + header.header_bytes + header.data_bytes <= size
    for name, (dtype, shape) in header.tensors.items():
        assert isinstance(name, str) and isinstance(dtype, str)
        assert len(shape) <= MAX_DIMENSIONS and all(type(d) is int and d >= 0 for d in shape)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in header.metadata.items())


@FUZZ
@given(text=st.text(alphabet='"\\[]{}a\x00', max_size=60))
def test_fuzz_string_removal_of_the_depth_count_matches_the_regex(text):
    """bounded_json counts depth outside strings in linear time; its result is the regex's."""
    assert outside_strings(text) == _STRING.sub("", text)


# ----------------------------------------------------------------------------- LoRA metadata
METADATA_KEYS = ["ss_tag_frequency", "ss_datasets", "ss_network_dim", "ss_network_alpha", "ss_clip_skip",
                 "modelspec.encoder_layer", "modelspec.title", "ss_output_name", "ss_sd_model_name",
                 "ss_resolution", "modelspec.resolution", "modelspec.trigger_phrase",
                 "modelspec.architecture", "ss_base_model_version", "ss_v2"]
metadata_values = (scalars.map(lambda v: v if isinstance(v, str) else json.dumps(v))
                   | json_text(json_values()) | st.text(max_size=400))


def _lora_bytes(metadata: dict) -> bytes:
    header = {"__metadata__": metadata,
              KOHYA_KEY + ".lora_down.weight": {"dtype": "F16", "shape": [2, 2048], "data_offsets": [0, 8192]}}
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(8192)


@FUZZ
@given(metadata=st.dictionaries(st.sampled_from(METADATA_KEYS), metadata_values, max_size=8))
def test_fuzz_lora_metadata(folder, metadata):
    path = _fresh(folder) / "fuzz.safetensors"
    path.write_bytes(_lora_bytes(metadata))
    entry = read_entry(path, path.name, path.stat().st_size, 0, {path.name})
    assert entry.readable and entry.rank == 2 and entry.base != ""
    assert math.isfinite(entry.alpha) and 0 <= entry.clip_skip <= MAX_CLIP_SKIP
    assert len(entry.triggers) <= MAX_TRIGGERS and len(entry.title) <= MAX_TITLE_CHARS
    assert all(isinstance(p, str) and "\n" not in p for p in entry.problems)
    _survives_the_cache(entry)


def _survives_the_cache(entry: LoraEntry) -> None:
    """Strict JSON out, the same entry back in: the index cache never loses it."""
    text = json.dumps(entry.to_dict(), allow_nan=False)
    again = LoraEntry.from_dict(json.loads(text))
    assert again.to_dict() == json.loads(text)


# ----------------------------------------------------------------------------- sidecars
# Mostly the shapes the tools write, with any value in any field (numbers far out of range,
# wrong types, JSON in strings), plus random JSON and random bytes.
numbers = (st.floats(allow_nan=False, allow_infinity=False) | st.integers(-2**70, 2**70)
           | st.sampled_from([1e308, -1e308, 2**64, 0.5, 3, -3]) | scalars)
texts = st.text(max_size=40) | st.sampled_from(["x" * 1000, "SDXL 1.0", "Pony", "a" * 64]) | scalars
words = st.lists(texts, max_size=6) | st.integers(300, 1000).map(lambda n: [f"w{i}" for i in range(n)]) | scalars
civitai_version = st.fixed_dictionaries({}, optional={
    "baseModel": texts, "trainedWords": words, "id": numbers, "nsfwLevel": numbers, "name": texts,
    "stats": st.fixed_dictionaries({}, optional={"downloadCount": numbers, "thumbsUpCount": numbers,
                                                 "thumbsDownCount": numbers}) | scalars,
    "model": st.fixed_dictionaries({}, optional={"name": texts, "tags": words, "nsfw": scalars}) | scalars,
    "description": texts,
    "files": st.lists(st.fixed_dictionaries({}, optional={"primary": scalars, "hashes": st.fixed_dictionaries(
        {}, optional={"SHA256": texts})}), max_size=2) | scalars})
usage_tips = st.fixed_dictionaries({}, optional={k: numbers for k in (
    "strength", "strength_min", "strength_max", "clip_strength", "clip_skip")})
lm_metadata = st.fixed_dictionaries({}, optional={
    "model_name": texts, "base_model": texts, "sha256": texts, "tags": words, "notes": texts,
    "preview_nsfw_level": numbers, "civitai": civitai_version | scalars,
    "usage_tips": usage_tips.map(json.dumps) | usage_tips | json_text(json_values()) | scalars})
a1111 = st.fixed_dictionaries({}, optional={
    "description": texts, "sd version": texts, "activation text": texts, "negative text": texts,
    "notes": texts, "preferred weight": numbers})


def sidecar_file(shape) -> st.SearchStrategy[bytes]:
    return (shape.map(lambda d: json.dumps(d).encode()) | json_text(json_values()).map(str.encode)
            | st.binary(max_size=200))


@FUZZ
@given(files=st.fixed_dictionaries({}, optional={
    ".civitai.info": sidecar_file(civitai_version), ".metadata.json": sidecar_file(lm_metadata),
    ".json": sidecar_file(a1111), ".txt": st.binary(max_size=200) | texts.map(lambda t: str(t).encode()),
    ".sha256": st.binary(max_size=80)}))
def test_fuzz_sidecars(folder, files):
    base = _fresh(folder)
    model = base / "fuzz.safetensors"
    model.write_bytes(_lora_bytes({}))
    for suffix, content in files.items():
        (base / f"fuzz{suffix}").write_bytes(content)
    names = {p.name for p in base.iterdir()}
    info = read_sidecars(model, names)
    assert all(-MAX_STRENGTH <= v <= MAX_STRENGTH for k, v in info.usage_tips.items() if k != "clip_skip")
    assert 0 <= info.usage_tips.get("clip_skip", 0) <= MAX_CLIP_SKIP
    assert -MAX_STRENGTH <= info.preferred_weight <= MAX_STRENGTH
    assert all(0 <= n <= MAX_COUNT for n in (info.downloads, info.thumbs_up, info.thumbs_down))
    assert len(info.trained_words) <= 2 * MAX_ITEMS and len(info.tags) <= 2 * MAX_ITEMS
    assert len(info.title) <= 2 * MAX_TITLE_CHARS + 1 and len(info.activation_text) <= MAX_PROMPT_CHARS
    assert len(info.notes) <= 3 * MAX_TEXT_CHARS + 2 and len(info.description) <= MAX_TEXT_CHARS
    assert all("\n" not in p for p in info.problems)
    json.dumps(vars(info), allow_nan=False)
    entry = read_entry(model, model.name, model.stat().st_size, 0, names)
    _survives_the_cache(entry)


# ----------------------------------------------------------------------------- stacks
lora_names = st.sampled_from(["a.safetensors", "sub/b.safetensors", "../x.safetensors", "sub/../../x",
                              "/etc/passwd", "C:x", "a\\..\\..\\b", "", " ", "a\x00b", "x" * 2000])
strengths = numbers | st.floats(allow_nan=True, allow_infinity=True) | st.floats(-12, 12)
HOSTILE_FIELDS = {
    "name": lora_names | st.text(max_size=20) | scalars, "strength_model": strengths, "strength_clip": strengths,
    "triggers": st.lists(st.text(max_size=8), max_size=3) | json_values(), "path": texts, "sha256": texts,
    "suggested": scalars, "notes": st.lists(st.text(max_size=8)) | scalars,
    "explanation": st.dictionaries(st.text(max_size=8), st.text(max_size=8)) | json_values(),
}
good_item = st.fixed_dictionaries({"name": st.sampled_from(["a.safetensors", "sub/b.safetensors"]),
                                   "strength_model": st.floats(-10, 10), "strength_clip": st.floats(-10, 10)})


@st.composite
def stacks_with_one_bad_field(draw):
    """A stack as to_dict() writes it with one field of one item (or of the stack) set to
    anything, so that each check meets its hostile values alone; as a dict or as JSON text."""
    items = draw(st.lists(good_item, min_size=1, max_size=4))
    stack = {"items": items}
    field = draw(st.sampled_from(sorted(HOSTILE_FIELDS)))
    value = draw(HOSTILE_FIELDS[field])
    if field in ("notes", "explanation"):
        stack[field] = value
    else:
        items[draw(st.integers(0, len(items) - 1))][field] = value
    return json.dumps(stack) if draw(st.booleans()) else stack


@FUZZ
@given(value=st.one_of(stacks_with_one_bad_field(), stacks_with_one_bad_field(), stacks_with_one_bad_field(),
                       json_values(), json_text(json_values())))
def test_fuzz_stack_input(value):
    try:
        stack = stack_from_input(value, "lora_stack")
    except LoraStackError as exc:
        assert str(exc).startswith("lora_stack: ") and "\n" not in str(exc)
        return
    assert len(stack.items) <= MAX_STACK_ITEMS
    for item in stack.items:
        assert isinstance(item.name, str) and ".." not in item.name.replace("\\", "/").split("/")
        assert not item.name.startswith(("/", "\\")) and item.name.strip() and not re.match("[A-Za-z]:", item.name)
        for strength in (item.strength_model, item.strength_clip):
            assert type(strength) is float and math.isfinite(strength) and abs(strength) <= MAX_STRENGTH
