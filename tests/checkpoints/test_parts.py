"""Reading one component's tensors out of a FLUX/SD3 part file (checkpoints/parts.py)."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from kubik_core.checkpoints.layout import CheckpointError
from kubik_core.checkpoints.parts import Part, read_part


def test_a_part_reads_its_prefix_and_a_file_changed_since_its_check_is_one_line(tmp_path):
    path = tmp_path / "clip_l.safetensors"
    save_file({"text_model.a.weight": torch.ones(4, 4, dtype=torch.float16), "other.b": torch.zeros(2)}, path)
    part = Part(str(path), "text_model.", {"a.weight": (4, 4)})
    tensors = read_part(part)
    assert list(tensors) == ["a.weight"] and tensors["a.weight"].dtype == torch.float32
    assert read_part(part, torch.bfloat16)["a.weight"].dtype == torch.bfloat16

    path.write_bytes(path.read_bytes()[:-20])     # cut short after the header was checked (a copy still writing)
    with pytest.raises(CheckpointError) as caught:
        read_part(part)
    assert str(caught.value).startswith("clip_l.safetensors: its tensors cannot be read (")
    assert "\n" not in str(caught.value) and str(tmp_path) not in str(caught.value)
