"""The safetensors header reader on real files and on each kind of broken file."""
from __future__ import annotations

import json
import struct

import pytest

from kubik_core.common.safetensors_file import SafetensorsFileError, load_tensors, open_safetensors, read_header
from kubik_core.loras.synthetic import kohya_metadata, write_lora


def test_reads_metadata_and_shapes_without_tensors(tmp_path):
    path = write_lora(tmp_path / "a.safetensors", "kohya", "sdxl", rank=4,
                      metadata=kohya_metadata("sdxl", "a", rank=4))
    header = read_header(path)
    assert header.metadata["ss_base_model_version"] == "sdxl_base_v1-0"
    key = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight"
    assert header.tensors[key] == ("F16", (4, 2048))
    assert 8 + header.header_bytes + header.data_bytes == path.stat().st_size


def _raw(tmp_path, payload: bytes, name="bad.safetensors"):
    path = tmp_path / name
    path.write_bytes(payload)
    return path


@pytest.mark.parametrize("payload, message", [
    (b"\x01\x02", "no header length"),
    (struct.pack("<Q", 1000) + b"{}", "runs past the end"),
    (struct.pack("<Q", 2**40) + b"{}", "not plausible"),
    (struct.pack("<Q", 5) + b"{abc}", "not valid JSON"),
    (struct.pack("<Q", 4) + b"\xff\xfe{}", "not valid UTF-8"),
    (struct.pack("<Q", 2) + b"[]", "not an object"),
])
def test_broken_headers_raise_a_clear_error(tmp_path, payload, message):
    with pytest.raises(SafetensorsFileError, match=message):
        read_header(_raw(tmp_path, payload))


def test_truncated_tensor_data(tmp_path):
    path = write_lora(tmp_path / "t.safetensors", "peft", "sd1")
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(SafetensorsFileError, match="truncated"):
        read_header(path)


def test_non_string_metadata_is_kept_as_json(tmp_path):
    header = json.dumps({"__metadata__": {"ss_network_dim": 8}, "w": {"dtype": "F16", "shape": [1],
                                                                    "data_offsets": [0, 2]}}).encode()
    path = _raw(tmp_path, struct.pack("<Q", len(header)) + header + b"\x00\x00")
    assert read_header(path).metadata == {"ss_network_dim": "8"}


def test_data_start_is_where_the_tensor_bytes_begin(tmp_path):
    header = json.dumps({"w": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]}}).encode()
    path = _raw(tmp_path, struct.pack("<Q", len(header)) + header + b"abc")
    assert path.read_bytes()[read_header(path).data_start:] == b"abc"


def test_open_safetensors_reads_tensors_and_names_a_damaged_file(tmp_path):
    path = write_lora(tmp_path / "a.safetensors", "kohya", "sd1", metadata={"ss_network_dim": "2"})
    with open_safetensors(path) as handle:
        assert handle.metadata() == {"ss_network_dim": "2"} and len(list(handle.keys())) > 0
    bad = _raw(tmp_path, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(SafetensorsFileError) as caught:
        with open_safetensors(bad, "loras/bad.safetensors"):
            pass
    assert str(caught.value).startswith("loras/bad.safetensors: not a readable safetensors file (")
    assert caught.value.file == "loras/bad.safetensors" and "\n" not in str(caught.value)
    with pytest.raises(SafetensorsFileError, match=r"^missing.safetensors: cannot read \("):
        with open_safetensors(tmp_path / "missing.safetensors", "missing.safetensors"):
            pass


def test_load_tensors_reads_a_whole_file_and_names_one_changed_since_its_header_was_read(tmp_path):
    """A file cut short or overwritten after its header check (a download still writing it) is one
    SafetensorsFileError naming the file, not safetensors' own error type (no OSError or ValueError)."""
    path = write_lora(tmp_path / "a.safetensors", "kohya", "sd1", rank=2, metadata=kohya_metadata("sd1", "a", rank=2))
    header = read_header(path)
    tensors = load_tensors(path, "a.safetensors")
    assert {k: (tuple(v.shape)) for k, v in tensors.items()} == {k: s for k, (_, s) in header.tensors.items()}

    whole = path.read_bytes()
    path.write_bytes(whole[:-100])
    with pytest.raises(SafetensorsFileError) as caught:
        load_tensors(path, "loras/a.safetensors")
    assert caught.value.file == "loras/a.safetensors" and "not a readable safetensors file" in caught.value.reason
    assert "\n" not in str(caught.value) and str(tmp_path) not in str(caught.value)

    path.unlink()
    with pytest.raises(SafetensorsFileError, match=r"^loras/a.safetensors: cannot read \(No such file"):
        load_tensors(path, "loras/a.safetensors")
