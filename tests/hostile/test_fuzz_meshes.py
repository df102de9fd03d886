"""Fuzz tests (hypothesis, fixed seed, bounded) of the mesh readers, the mesh cleaner and the 3D
model config schema: whatever the bytes or values, the answer is a usable result or the parser's
own error (MeshError, OffError, ConfigError), never another exception, a hang or a warning."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import trimesh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubik_core.recon3d.errors import MeshError
from kubik_core.recon3d.mesh.io import clean_mesh, load_mesh
from kubik_core.recon3d.mesh.off_reader import OffError, read_off
from kubik_core.recon3d.models.config import ConfigError, load_config, parse_config_json

FUZZ = settings(derandomize=True, max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
BOX = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
SAMPLES = {suffix: (BOX.export(file_type=suffix) if suffix != "off" else BOX.export(file_type="off"))
           for suffix in ("obj", "ply", "stl", "glb", "off")}
SAMPLES = {k: v.encode() if isinstance(v, str) else v for k, v in SAMPLES.items()}


def assert_usable(mesh) -> None:
    """What every mesh that load_mesh/clean_mesh returns guarantees."""
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    assert vertices.ndim == 2 and vertices.shape[1] == 3 and np.isfinite(vertices).all()
    assert faces.ndim == 2 and faces.shape[1] == 3 and len(faces) > 0
    assert faces.min() >= 0 and faces.max() < len(vertices)
    assert set(mesh.metadata["orientation"]) == {"faces_flipped", "non_orientable_parts", "non_manifold_edges",
                                                 "consistent"}


# ----------------------------------------------------------------------------- OFF
numbers = st.one_of(st.integers(-5, 40).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
                    st.sampled_from(["nan", "-inf", "1e999", "x", "", "0x10", "#", "3.5"]))
off_lines = st.lists(st.lists(numbers, max_size=8).map(" ".join), max_size=30)


@FUZZ
@given(header=st.sampled_from(["OFF", "COFF", "NOFF", "STOFF", "4OFF", "OFF BINARY", "OF", ""]),
       counts=st.tuples(st.integers(-2, 12), st.integers(-2, 12)), lines=off_lines)
def test_fuzz_off_text(header, counts, lines):
    text = f"{header}\n{counts[0]} {counts[1]} 0\n" + "\n".join(lines)
    try:
        vertices, faces = read_off(text.encode())
    except OffError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert vertices.shape == (counts[0], 3) and faces.ndim == 2 and faces.shape[1] == 3
    assert len(faces) == 0 or (faces.min() >= 0 and faces.max() < counts[0])


@FUZZ
@given(data=st.binary(max_size=3000))
def test_fuzz_off_bytes(data):
    try:
        vertices, faces = read_off(data)
    except OffError:
        return
    assert len(faces) == 0 or faces.max() < len(vertices)


# ----------------------------------------------------------------------------- every reader
def mutated(sample: bytes):
    """A valid file with some bytes replaced, then maybe truncated or extended."""
    return st.tuples(st.lists(st.tuples(st.integers(0, len(sample) - 1), st.integers(0, 255)), max_size=12),
                     st.integers(0, len(sample) + 50), st.binary(max_size=40)).map(
        lambda t: _apply(sample, *t))


def _apply(sample: bytes, changes, length, tail) -> bytes:
    data = bytearray(sample)
    for position, value in changes:
        data[position] = value
    return bytes(data[:length]) + (tail if length >= len(sample) else b"")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_meshes")


@pytest.mark.parametrize("suffix", sorted(SAMPLES))
def test_fuzz_mesh_files(folder, suffix):
    """Damaged versions of a real box file in each format, and arbitrary bytes."""
    path = folder / f"fuzzed.{suffix}"

    @FUZZ
    @given(data=st.one_of(mutated(SAMPLES[suffix]), st.binary(max_size=2000)))
    def check(data):
        path.write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("error")   # a warning would reach the user's stderr
            try:
                mesh = load_mesh(path)
            except MeshError as exc:
                assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
                return
        assert_usable(mesh)

    check()


# ----------------------------------------------------------------------------- the cleaner
coordinates = st.one_of(st.floats(-1e35, 1e35), st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e-40, -1e-300]))


@FUZZ
@given(vertices=st.lists(st.tuples(coordinates, coordinates, coordinates), max_size=12),
       faces=st.lists(st.tuples(*[st.integers(-3, 14)] * 3), max_size=16))
def test_fuzz_clean_arbitrary_arrays(vertices, faces):
    class Raw:  # what clean_mesh reads of a trimesh object
        pass

    raw = Raw()
    raw.vertices = np.array(vertices, np.float64).reshape(-1, 3)
    raw.faces = np.array(faces, np.int64).reshape(-1, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            mesh = clean_mesh(raw)
        except MeshError as exc:
            assert str(exc) and "\n" not in str(exc)
            return
    assert_usable(mesh)


@FUZZ
@given(exponent=st.integers(-25, 25), seed=st.integers(0, 2 ** 32 - 1), flip_share=st.floats(0.0, 1.0),
       shape=st.sampled_from(["box", "sphere", "capsule"]))
def test_fuzz_orientation_repair_of_scrambled_closed_meshes(exponent, seed, flip_share, shape):
    """Any closed mesh, at any scale from 1e-25 to 1e25 and offset, with its faces shuffled and any
    share of them flipped, comes back whole, consistently wound, enclosing its true volume."""
    source = {"box": BOX, "sphere": trimesh.creation.icosphere(subdivisions=2),
              "capsule": trimesh.creation.capsule(height=1.0, radius=0.4, count=[8, 8])}[shape]
    rng = np.random.default_rng(seed)
    scale = 10.0 ** exponent
    faces = np.asarray(source.faces)[rng.permutation(len(source.faces))]
    flip = rng.random(len(faces)) < flip_share
    faces[flip] = faces[flip][:, ::-1]
    scrambled = trimesh.Trimesh(source.vertices * scale + rng.normal(size=3) * scale, faces, process=False)
    mesh = clean_mesh(scrambled)
    assert (len(mesh.vertices), len(mesh.faces)) == (len(source.vertices), len(source.faces))
    assert mesh.is_winding_consistent and mesh.metadata["orientation"]["consistent"]
    assert mesh.volume == pytest.approx(source.volume * scale ** 3, rel=1e-6)


# ----------------------------------------------------------------------------- the config schema
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10 ** 30, 10 ** 30), st.floats(allow_nan=False), st.text(max_size=30)),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)),
    max_leaves=20)
TINY = load_config("tiny").to_dict()


@FUZZ
@given(text=st.one_of(st.text(max_size=300), json_values.map(json.dumps)))
def test_fuzz_config_text(text):
    try:
        parse_config_json(text)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)


@FUZZ
@given(section=st.sampled_from(sorted(k for k, v in TINY.items() if isinstance(v, dict))),
       key=st.one_of(st.text(max_size=12), st.sampled_from(["width", "depth", "heads", "steps", "backbone",
                                                           "backbone_kwargs", "pretrained_file", "lr", "cfg"])),
       value=json_values)
def test_fuzz_one_changed_config_value(section, key, value):
    """The tiny config with one value replaced: refused naming a key, or still within every range."""
    config = json.loads(json.dumps(TINY))
    config[section][key] = value
    try:
        accepted = parse_config_json(json.dumps(config))
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("model config")
        return
    changed = accepted.to_dict()[section][key]
    if key in ("width", "depth", "heads", "steps"):
        assert isinstance(changed, int) and 1 <= changed <= 1_000_000_000
    if key == "backbone":
        assert ":" not in changed and "/" not in changed
