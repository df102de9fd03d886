"""build_checked refuses a config that does not fit its weights file before allocating the model."""
import pytest
import torch
from safetensors.torch import save_file

from kubik_core.common.weights import WeightsFileError, build_checked, parameter_count, tensor_shapes


def _mlp(width: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU(), torch.nn.Linear(width, 2))


def test_matching_file_builds_the_model(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(_mlp(8).state_dict(), str(path))
    model = build_checked(lambda: _mlp(8), path)
    assert next(model.parameters()).device.type == "cpu"
    assert parameter_count(tensor_shapes(path)) == sum(p.numel() for p in model.parameters())


def test_huge_config_against_a_small_file_is_refused_without_allocating(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(_mlp(8).state_dict(), str(path))
    built = []

    def huge():  # 4 x 10^10 floats: 160 GB if it were ever built for real
        model = _mlp(10_000_000_000)
        built.append(next(model.parameters()).device.type)
        return model

    with pytest.raises(WeightsFileError, match=r"m.safetensors: 3 tensor\(s\) have another shape"):
        build_checked(huge, path)
    assert built == ["meta"]


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    path = tmp_path / "m.safetensors"
    state = _mlp(8).state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["2.bias"]
    save_file(state, str(path))
    with pytest.raises(WeightsFileError, match=r"missing 1 tensor\(s\): 2.bias; unexpected 1 tensor\(s\): extra.weight"):
        build_checked(lambda: _mlp(8), path)


def test_damaged_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(WeightsFileError, match="bad.safetensors: not a readable safetensors file"):
        tensor_shapes(path)
