"""Hostile and broken mesh files: one real file per case, written by the test, read through the
real loader (and the SDF, `kubik 3d preprocess`), each with its exact error or its repaired result.

Findings of issue 15 covered here: coordinates beyond ~1e10 collapsed by the vertex merge (and
below ~1e-8 merged into a point); closed meshes with inconsistently wound faces labelled wrongly
while meta.json said watertight; valid OFF files with polygons of five or more sides failing with
a bare TypeError; PLY faces naming missing vertices raising a raw IndexError; glTF assets outside
the mesh's folder; scenes that repeat one mesh into billions of triangles; numpy warnings on stderr.
"""
from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import numpy as np
import pytest
import trimesh

from kubik_core.recon3d.errors import MeshError
from kubik_core.recon3d.mesh.io import MAX_FACES, load_mesh
from kubik_core.recon3d.sdf import MeshSDF

REPO = Path(__file__).resolve().parents[2]
BOX = trimesh.creation.box(extents=(1.0, 2.0, 3.0))


def box_sdf(points: np.ndarray, extents, center=(0.0, 0.0, 0.0)) -> np.ndarray:
    """The exact signed distance of an axis-aligned box (negative inside)."""
    q = np.abs(np.asarray(points) - center) - np.asarray(extents) / 2.0
    return np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0)


def sign_agreement(mesh, extents, center=(0.0, 0.0, 0.0), count=20000) -> float:
    """Share of random points around the box whose inside/outside label from MeshSDF matches the
    true box's (points within 1e-3 of the surface are left out: either label is fine there)."""
    extents, center = np.asarray(extents, float), np.asarray(center, float)
    points = np.random.default_rng(0).uniform(-1.0, 1.0, (count, 3)) * extents + center
    truth = box_sdf(points, extents, center)
    far = np.abs(truth) > 1e-3 * extents.max()
    signed = MeshSDF(mesh.vertices, mesh.faces)(points[far])
    return float(np.mean((signed < 0) == (truth[far] < 0)))


def scrambled(mesh, seed: int = 0, flip_share: float = 0.4):
    """The mesh's faces in shuffled order, about ``flip_share`` of them wound the other way."""
    rng = np.random.default_rng(seed)
    faces = np.asarray(mesh.faces)[rng.permutation(len(mesh.faces))]
    flip = rng.random(len(faces)) < flip_share
    faces[flip] = faces[flip][:, ::-1]
    return trimesh.Trimesh(mesh.vertices, faces, process=False)


def exported(mesh, file_type: str) -> bytes:
    data = mesh.export(file_type=file_type)
    return data.encode() if isinstance(data, str) else data


def ply_ascii(vertices, faces) -> bytes:
    header = (f"ply\nformat ascii 1.0\nelement vertex {len(vertices)}\nproperty float x\nproperty float y\n"
              f"property float z\nelement face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    rows = [" ".join(map(str, v)) for v in vertices] + [" ".join(map(str, [len(f), *f])) for f in faces]
    return (header + "\n".join(rows) + "\n").encode()


def binary_stl(triangles, declared: int | None = None) -> bytes:
    body = b"".join(struct.pack("<12fH", 0, 0, 0, *np.ravel(t), 0) for t in triangles)
    return b"\0" * 80 + struct.pack("<I", len(triangles) if declared is None else declared) + body


GARBAGE = np.random.default_rng(7).integers(0, 256, 3000, dtype=np.uint8).tobytes()
TRIANGLE = "3 1 0\n0 0 0\n1 0 0\n0 1 0\n"
OFF_BOX = exported(BOX, "off")
UNREADABLE = "cannot be read, the file is damaged or not a valid {} file \\(.+\\)"
NO_MESH = "the file holds no triangle mesh.*"

# (file name, bytes, the exact message after "<path>: ")
CORPUS = [
    ("empty.off", b"", r"the file is empty \(no OFF header\)"),
    ("garbage.off", GARBAGE, r"not an OFF file: it starts with .+, not the keyword OFF"),
    ("truncated.off", OFF_BOX[: len(OFF_BOX) // 2],
     r"the header declares 8 vertices and 12 faces, but the file holds only \d+ lines after it \(truncated\?\)"),
    ("huge_counts.off", b"OFF\n999999999999 999999999 0\n0 0 0\n",
     r"the header declares 999999999999 vertices and 999999999 faces, but the file holds only 1 lines after it "
     r"\(truncated\?\)"),
    ("negative_count.off", b"OFF\n-3 1 0\n0 0 0\n",
     r"the counts line must start with the numbers of vertices and faces, got '-3 1 0'"),
    ("negative_index.off", f"OFF\n{TRIANGLE}3 0 1 -1\n".encode(),
     r"face 0 refers to vertex -1, but the file has vertices 0\.\.2"),
    ("index_out_of_range.off", f"OFF\n{TRIANGLE}3 0 1 7\n".encode(),
     r"face 0 refers to vertex 7, but the file has vertices 0\.\.2"),
    ("two_corners.off", f"OFF\n{TRIANGLE}2 0 1\n".encode(), r"face 0 has 2 vertices; a face needs at least 3"),
    ("short_face.off", f"OFF\n{TRIANGLE}4 0 1 2\n".encode(), r"face 0 declares 4 vertices but lists 3"),
    ("word_index.off", f"OFF\n{TRIANGLE}3 0 1 x\n".encode(),
     r"face 0 is not a vertex count followed by vertex indices: '3 0 1 x'"),
    ("word_vertex.off", b"OFF\n3 1 0\n0 0 0\n1 y 0\n0 1 0\n3 0 1 2\n", r"vertex 1 is not three numbers: '1 y 0'"),
    ("binary.off", b"OFF BINARY\n" + GARBAGE[:64],
     r"binary OFF is not supported; write the file as text OFF \(or as PLY\)"),
    ("four_d.off", b"4OFF\n3 1 0\n0 0 0 0\n1 0 0 0\n0 1 0 0\n3 0 1 2\n",
     r"4OFF files \(4D or n-dimensional\) are not supported; only 3D OFF is"),
    ("nan.off", b"OFF\n3 1 0\n0 0 0\nnan 0 0\n0 1 0\n3 0 1 2\n", r"1 vertices have NaN or infinite coordinates"),
    ("infinite.off", b"OFF\n3 1 0\n0 0 0\n1e999 0 0\n0 1 0\n3 0 1 2\n",
     r"1 vertices have NaN or infinite coordinates"),
    ("beyond_1e30.off", b"OFF\n3 1 0\n0 0 0\n1e31 0 0\n0 1e31 0\n3 0 1 2\n",
     r"coordinates reach 1e\+31, beyond the supported \+-1e\+30; rescale the mesh \(e\.g\. to metres\)"),
    ("below_1e-30.off", b"OFF\n3 1 0\n0 0 0\n1e-31 0 0\n0 1e-31 0\n3 0 1 2\n",
     r"the mesh is 1e-31 units across, below the supported 1e-30; rescale the mesh \(e\.g\. to millimetres\)"),
    ("collinear.off", b"OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n", r"every face is degenerate \(zero area\)"),
    ("points_only.off", b"OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", r"the mesh has no faces \(a point cloud\?\)"),
    ("empty.obj", b"", NO_MESH),
    ("garbage.obj", GARBAGE, NO_MESH),
    ("points_only.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", NO_MESH),
    ("index_out_of_range.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", UNREADABLE.format(r"\.obj")),
    ("negative_out_of_range.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf -1 -2 -9\n", UNREADABLE.format(r"\.obj")),
    ("words.obj", b"v a b c\nf x y z\n", UNREADABLE.format(r"\.obj")),
    ("nan.obj", b"v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n", r"1 vertices have NaN or infinite coordinates"),
    ("overflow.obj", b"v 0 0 0\nv 1e300 0 0\nv 0 1e300 0\nv -1e300 -1e300 1e300\nf 1 2 3\nf 1 2 4\n",
     r"coordinates reach 1e\+300, beyond the supported \+-1e\+30; rescale the mesh \(e\.g\. to metres\)"),
    ("index_out_of_range.ply", ply_ascii([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 99]]),
     r"1 faces refer to vertices that do not exist \(indices outside 0\.\.2, e\.g\. 99\)"),
    ("negative_index.ply", ply_ascii([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, -5]]),
     r"1 faces refer to vertices that do not exist \(indices outside 0\.\.2, e\.g\. -5\)"),
    ("empty.ply", b"", UNREADABLE.format(r"\.ply")),
    ("garbage.ply", GARBAGE, UNREADABLE.format(r"\.ply")),
    ("truncated.ply", exported(BOX, "ply")[:-100], UNREADABLE.format(r"\.ply")),
    ("huge_count.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex 4000000000\nproperty float x\n"
     b"property float y\nproperty float z\nend_header\n" + bytes(48), UNREADABLE.format(r"\.ply")),
    ("empty.stl", b"", NO_MESH),
    ("garbage.stl", GARBAGE, NO_MESH),
    ("truncated.stl", exported(BOX, "stl")[:300], NO_MESH),
    ("huge_count.stl", binary_stl([np.eye(3)], declared=4_000_000_000), NO_MESH),
    ("nan.stl", binary_stl([[[0, 0, 0], [np.nan, 0, 0], [0, 1, 0]]]), r"1 vertices have NaN or infinite coordinates"),
    ("empty.glb", b"", UNREADABLE.format(r"\.glb")),
    ("garbage.glb", GARBAGE, UNREADABLE.format(r"\.glb")),
    ("truncated.glb", exported(BOX, "glb")[:-200], UNREADABLE.format(r"\.glb")),
    ("huge_length.glb", b"glTF" + struct.pack("<IIII", 2, 0xFFFFFFF0, 0xFFFFFF00, 0x4E4F534A) + b"{}", NO_MESH),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name, data, message", CORPUS, ids=[c[0] for c in CORPUS])
def test_a_hostile_mesh_file_is_refused_with_its_reason(tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(MeshError) as info:
        load_mesh(path)
    text = str(info.value)
    assert "\n" not in text
    assert re.fullmatch(re.escape(f"{path}: ") + message, text), text


# ----------------------------------------------------------------------------- coordinates
@pytest.mark.parametrize("scale", [1e-9, 1e11, 1e12, 1e15, 1e29])
def test_boxes_at_extreme_scales_keep_their_shape_and_signs(tmp_path, scale):
    """At 1e11 the old vertex merge (a fixed 1e-8 grid, cast to int64) collapsed the box to 4
    vertices, at 1e12 and beyond to nothing; at 1e-9 it merged the whole box into one vertex."""
    center = np.array([0.3, -0.2, 0.5]) * scale
    path = tmp_path / "box.ply"
    trimesh.Trimesh(BOX.vertices * scale + center, BOX.faces, process=False).export(path)
    mesh = load_mesh(path)
    assert (len(mesh.vertices), len(mesh.faces)) == (8, 12) and mesh.is_watertight
    assert mesh.volume == pytest.approx(6.0 * scale ** 3, rel=1e-5)
    assert sign_agreement(mesh, np.array([1.0, 2.0, 3.0]) * scale, center) == 1.0


def test_preprocess_of_a_box_at_1e12_gives_exact_signs(tmp_path):
    """The finding: at 1e12 preprocess reported success while its SDF agreed on 0.70 of the signs."""
    from kubik_core.recon3d.data.preprocess import PreprocessConfig, preprocess_folder
    from kubik_core.recon3d.data.samples import SampleConfig

    (tmp_path / "meshes").mkdir()
    trimesh.Trimesh(BOX.vertices * 1e12 + 4e12, BOX.faces, process=False).export(tmp_path / "meshes" / "big.obj")
    config = PreprocessConfig(samples=SampleConfig(surface=500, near=2000, uniform=4000), render=None, device="cpu")
    report = preprocess_folder(tmp_path / "meshes", tmp_path / "out", config)
    assert report["done"] == 1 and report["failed"] == [] and report["warnings"] == []
    meta = json.loads((tmp_path / "out" / "big" / "meta.json").read_text())
    assert meta["mesh"]["faces"] == 12 and meta["mesh"]["watertight"]
    assert meta["normalization"]["scale"] == pytest.approx(3e12 / 1.9, rel=1e-9)
    samples = np.load(tmp_path / "out" / "big" / "samples.npz")
    truth = box_sdf(samples["uniform_points"], np.array([1.0, 2.0, 3.0]) / (3.0 / 1.9))
    assert np.mean((samples["uniform_sdf"] < 0) == (truth < 0)) == 1.0
    assert np.allclose(samples["uniform_sdf"], truth, atol=1e-5)


# ----------------------------------------------------------------------------- orientation
def test_shuffled_partly_flipped_box_is_repaired(tmp_path):
    """A closed box whose faces come shuffled, some wound the other way: every edge is shared by two
    faces (trimesh calls it watertight), but the winding number inside is 1/3 or 2/3."""
    broken = scrambled(BOX)
    assert broken.is_watertight and not broken.is_winding_consistent
    assert sign_agreement(broken, (1.0, 2.0, 3.0)) < 0.9   # the finding: wrong inside labels
    path = tmp_path / "shuffled.obj"
    path.write_bytes(exported(broken, "obj"))
    mesh = load_mesh(path)
    assert mesh.metadata["orientation"] == {"faces_flipped": 6, "non_orientable_parts": 0, "non_manifold_edges": 0,
                                            "consistent": True}
    assert mesh.is_winding_consistent and mesh.volume == pytest.approx(6.0)
    assert sign_agreement(mesh, (1.0, 2.0, 3.0)) == 1.0


def test_a_scrambled_plane_model_is_repaired_to_the_signs_of_the_original(tmp_path):
    """A closed model of a small aeroplane (fuselage, wings, tail fin: a boolean union, so one
    closed surface) with 40 % of its faces wound the other way, in shuffled order."""
    parts = [trimesh.creation.capsule(height=3.0, radius=0.35, count=[24, 24]),
             trimesh.creation.box(extents=(4.0, 0.12, 0.9)), trimesh.creation.box(extents=(0.1, 0.9, 0.5))]
    parts[0].apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
    parts[2].apply_translation([0.0, 0.5, 1.4])
    plane = trimesh.boolean.union(parts, engine="manifold")
    assert plane.is_watertight and plane.is_winding_consistent and plane.volume > 0
    path = tmp_path / "plane.ply"
    path.write_bytes(exported(scrambled(plane, seed=3), "ply"))
    mesh = load_mesh(path)
    assert mesh.metadata["orientation"]["consistent"] and mesh.metadata["orientation"]["faces_flipped"] > 0
    assert mesh.is_winding_consistent and mesh.volume == pytest.approx(plane.volume, rel=1e-9)
    points = np.random.default_rng(1).uniform(plane.bounds[0] - 0.2, plane.bounds[1] + 0.2, (20000, 3))
    truth = MeshSDF(plane.vertices, plane.faces)(points)
    assert np.mean((MeshSDF(mesh.vertices, mesh.faces)(points) < 0) == (truth < 0)) == 1.0
    unrepaired = trimesh.load(path, process=False)
    assert np.mean((MeshSDF(unrepaired.vertices, unrepaired.faces)(points) < 0) == (truth < 0)) < 0.97


def test_an_inside_out_solid_is_turned_outwards_and_a_cavity_is_kept(tmp_path):
    inverted = trimesh.Trimesh(BOX.vertices, BOX.faces[:, ::-1], process=False)
    (tmp_path / "inverted.stl").write_bytes(exported(inverted, "stl"))
    mesh = load_mesh(tmp_path / "inverted.stl")
    assert mesh.metadata["orientation"]["faces_flipped"] == 12 and mesh.volume == pytest.approx(6.0)
    assert sign_agreement(mesh, (1.0, 2.0, 3.0)) == 1.0

    cavity = trimesh.creation.box(extents=(0.5, 0.5, 0.5))
    hollow = trimesh.util.concatenate([BOX, trimesh.Trimesh(cavity.vertices, cavity.faces[:, ::-1], process=False)])
    (tmp_path / "hollow.obj").write_bytes(exported(hollow, "obj"))
    mesh = load_mesh(tmp_path / "hollow.obj")
    assert mesh.metadata["orientation"]["faces_flipped"] == 0
    assert mesh.volume == pytest.approx(6.0 - 0.125)
    assert list(MeshSDF(mesh.vertices, mesh.faces)([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]) < 0) == [False, True]


def moebius_strip(sections: int = 40):
    """A Moebius strip: no choice of winding makes its faces agree."""
    vertices = []
    for t in np.linspace(0.0, 2.0 * np.pi, sections, endpoint=False):
        for w in (-0.3, 0.3):
            r = 1.0 + w * np.cos(t / 2.0)
            vertices.append([r * np.cos(t), r * np.sin(t), w * np.sin(t / 2.0)])
    faces = []
    for i in range(sections):
        a, b = 2 * i, 2 * i + 1
        c, d = (2 * (i + 1), 2 * (i + 1) + 1) if i + 1 < sections else (1, 0)   # the half twist
        faces += [[a, c, b], [b, c, d]]
    return trimesh.Trimesh(np.array(vertices), np.array(faces), process=False)


def test_a_mesh_no_orientation_can_fix_is_flagged_in_meta_and_report(tmp_path):
    from kubik_core.recon3d.data.preprocess import PreprocessConfig, preprocess_folder
    from kubik_core.recon3d.data.samples import SampleConfig

    (tmp_path / "meshes").mkdir()
    (tmp_path / "meshes" / "strip.ply").write_bytes(exported(moebius_strip(), "ply"))
    (tmp_path / "meshes" / "box.obj").write_bytes(exported(scrambled(BOX), "obj"))
    config = PreprocessConfig(samples=SampleConfig(surface=300, near=300, uniform=300), render=None, device="cpu")
    report = preprocess_folder(tmp_path / "meshes", tmp_path / "out", config)
    assert report["done"] == 2
    assert report["warnings"] == [{"source": str(tmp_path / "meshes" / "strip.ply"),
                                   "warning": "1 part(s) of the mesh cannot be oriented consistently (a "
                                              "Moebius-like surface): its inside/outside labels may be wrong"}]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["warnings"] == report["warnings"]
    strip = json.loads((tmp_path / "out" / "strip" / "meta.json").read_text())["mesh"]
    box = json.loads((tmp_path / "out" / "box" / "meta.json").read_text())["mesh"]
    assert strip["orientation"]["consistent"] is False and strip["orientation"]["non_orientable_parts"] == 1
    assert box["watertight"] and box["orientation"] == {"consistent": True, "faces_flipped": 6,
                                                        "non_manifold_edges": 0, "non_orientable_parts": 0}


# ----------------------------------------------------------------------------- OFF polygons
def test_off_with_triangles_quads_and_pentagons_is_read_as_the_solid_it_describes(tmp_path):
    """A pentagonal prism written as two pentagon caps, four quad sides and one side as two
    triangles: valid OFF that trimesh's reader failed on with a bare TypeError."""
    ring = [(np.cos(a), np.sin(a)) for a in np.linspace(0.0, 2.0 * np.pi, 5, endpoint=False)]
    vertices = [(x, y, 0.0) for x, y in ring] + [(x, y, 2.0) for x, y in ring]
    faces = ["5 4 3 2 1 0", "5 5 6 7 8 9"]
    for i in range(4):
        j = i + 1
        faces.append(f"4 {i} {j} {j + 5} {i + 5}")
    faces += ["3 4 0 5", "3 4 5 9"]
    text = "OFF\n# a pentagonal prism\n" + f"{len(vertices)} {len(faces)} 0\n"
    text += "\n".join(" ".join(map(str, v)) for v in vertices) + "\n" + "\n".join(faces) + "\n"
    path = tmp_path / "prism.off"
    path.write_text(text)
    mesh = load_mesh(path)
    assert len(mesh.faces) == 2 * 3 + 4 * 2 + 2
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.metadata["orientation"]["faces_flipped"] == 0
    pentagon_area = 2.5 * np.sin(2.0 * np.pi / 5.0)
    assert mesh.volume == pytest.approx(pentagon_area * 2.0, rel=1e-12)
    assert list(MeshSDF(mesh.vertices, mesh.faces)([[0.0, 0.0, 1.0], [0.0, 0.0, 2.5]]) < 0) == [True, False]


def test_off_header_glued_to_its_counts_and_colour_columns(tmp_path):
    """ModelNet's known defect ("OFF8 12 0" on one line) and COFF's colour columns are read."""
    body = OFF_BOX.decode().split("\n", 1)[1]
    (tmp_path / "glued.off").write_text("OFF" + body)
    lines = OFF_BOX.decode().strip().splitlines()
    coloured = ["COFF", lines[1]] + [f"{line} 255 0 0 255" for line in lines[2:]]
    (tmp_path / "coloured.off").write_text("\n".join(coloured) + "\n")
    for name in ("glued.off", "coloured.off"):
        mesh = load_mesh(tmp_path / name)
        assert len(mesh.faces) == 12 and mesh.volume == pytest.approx(6.0)


# ----------------------------------------------------------------------------- scenes and assets
def test_gltf_assets_are_read_only_from_the_mesh_folder(tmp_path):
    """A glTF buffer named ../outside.bin or by an absolute path is not read (the file exists and
    would give a valid mesh); the same buffer beside the file is."""
    files = trimesh.Scene(BOX).export(file_type="gltf")
    model = json.loads(files["model.gltf"])
    buffers = {name: data for name, data in files.items() if name.endswith(".bin")}
    (tmp_path / "models").mkdir()
    for name, data in buffers.items():
        (tmp_path / name).write_bytes(data)                      # outside the models folder only
    for uri in ("../{}", str(tmp_path / "{}")):
        for buffer, name in zip(model["buffers"], buffers):
            buffer["uri"] = uri.format(name)
        path = tmp_path / "models" / "escaping.gltf"
        path.write_text(json.dumps(model))
        with pytest.raises(MeshError, match=re.escape(f"{path}: cannot be read, the file is damaged or not a valid "
                                                      ".gltf file (FileNotFoundError: asset ")
                           + ".*is not a file in the mesh's folder"):
            load_mesh(path)
    for buffer, (name, data) in zip(model["buffers"], buffers.items()):
        buffer["uri"] = name
        (tmp_path / "models" / name).write_bytes(data)
    (tmp_path / "models" / "inside.gltf").write_text(json.dumps(model))
    assert len(load_mesh(tmp_path / "models" / "inside.gltf").faces) == 12


class _Recorder(BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        _Recorder.requests.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(bytes(144))

    def log_message(self, *args):
        pass


def test_gltf_buffer_urls_never_reach_the_network(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        files = trimesh.Scene(BOX).export(file_type="gltf")
        model = json.loads(files["model.gltf"])
        for buffer in model["buffers"]:
            buffer["uri"] = f"http://127.0.0.1:{server.server_address[1]}/{buffer['uri']}"
        path = tmp_path / "remote.gltf"
        path.write_text(json.dumps(model))
        with pytest.raises(MeshError, match="is not a file in the mesh's folder"):
            load_mesh(path)
    finally:
        server.shutdown()
        server.server_close()
    assert _Recorder.requests == []


@pytest.mark.timeout(60)
def test_a_scene_repeating_one_mesh_past_the_triangle_limit_is_refused_before_copying(tmp_path):
    """700 nodes of one 81,920-triangle ball: a 1.5 MB file that would unpack to 57 M triangles."""
    ball = trimesh.creation.icosphere(subdivisions=6)
    scene = trimesh.Scene()
    scene.add_geometry(ball, geom_name="ball", node_name="n0")
    for i in range(1, 700):
        matrix = np.eye(4)
        matrix[:3, 3] = (3.0 * i, 0.0, 0.0)
        scene.graph.update(frame_to=f"n{i}", frame_from=scene.graph.base_frame, matrix=matrix, geometry="ball")
    path = tmp_path / "many.glb"
    path.write_bytes(scene.export(file_type="glb"))
    assert path.stat().st_size < 2_000_000 and 700 * len(ball.faces) > MAX_FACES
    with pytest.raises(MeshError, match=re.escape(f"{path}: its scene places more than {MAX_FACES:,} triangles")):
        load_mesh(path)


# ----------------------------------------------------------------------------- the command line
@pytest.mark.timeout(300)
def test_preprocess_of_hostile_numbers_prints_no_numpy_warnings(tmp_path):
    """`kubik 3d preprocess` in a fresh process: a box at 1e20 (the old merge cast overflowed with
    'invalid value encountered in cast'), a mesh of NaNs and a thin sliver; stderr holds the
    progress bar only, and the report says what failed."""
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    trimesh.Trimesh(BOX.vertices * 1e20, BOX.faces, process=False).export(meshes / "huge.ply")
    (meshes / "nan.obj").write_bytes(b"v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (meshes / "sliver.off").write_bytes(b"OFF\n3 1 0\n0 0 0\n1 0 0\n2 1e-300 0\n3 0 1 2\n")
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    proc = subprocess.run([sys.executable, "-m", "kubik_core", "3d", "preprocess", str(meshes), str(tmp_path / "out"),
                           "--views", "0", "--surface", "200", "--near", "200", "--uniform", "200", "--device", "cpu",
                           "--json"], capture_output=True, text=True, cwd=REPO, env=env, timeout=280)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    assert report["done"] == 1
    assert {Path(f["source"]).name: f["error"] for f in report["failed"]} == {
        "nan.obj": "1 vertices have NaN or infinite coordinates",
        "sliver.off": "every face is degenerate (zero area)"}
