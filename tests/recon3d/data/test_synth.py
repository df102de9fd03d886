"""Procedural shapes."""
from __future__ import annotations

import numpy as np
import pytest
import trimesh

from kubik_core.recon3d.data.synth import PRIMITIVES, random_primitive, write_synthetic_meshes


def test_synthetic_shapes_are_closed_and_reproducible(tmp_path):
    paths = write_synthetic_meshes(tmp_path / "a", 4, seed=7)
    again = write_synthetic_meshes(tmp_path / "b", 4, seed=7)
    other = write_synthetic_meshes(tmp_path / "c", 1, seed=8)
    assert [p.name for p in paths] == [f"synth_{i:05d}.ply" for i in range(4)]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(paths, again))
    assert other[0].read_bytes() != paths[0].read_bytes()
    for path in paths:
        mesh = trimesh.load(path)
        assert mesh.is_watertight and mesh.volume > 0
        assert np.abs(mesh.bounds).max() < 2.0


@pytest.mark.parametrize("kind", PRIMITIVES)
def test_every_primitive_is_a_solid(kind):
    mesh = random_primitive(np.random.default_rng(0), kind)
    assert mesh.is_watertight and mesh.volume > 0
