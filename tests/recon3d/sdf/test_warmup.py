"""One compile of the SDF engine serves every mesh: ``warm_up`` (and ``kubik 3d warmup``) leaves
nothing for a later mesh or point array to compile, whatever its kind."""
from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from numba.core.registry import CPUDispatcher

from kubik_core.recon3d.sdf import MeshSDF, cpu, warm_up


def compiled_signatures() -> dict[str, int]:
    """How many type signatures numba has compiled (or loaded) for each kernel of the CPU engine."""
    return {name: len(k.signatures) for name, k in vars(cpu).items() if isinstance(k, CPUDispatcher)}


@pytest.mark.timeout(600)  # a first compile without numba's cache takes a minute on a busy 2-core machine
def test_meshes_and_points_of_every_kind_compile_nothing_after_warm_up():
    """Before kernel argument types were made stable, an open mesh (a strided array among its
    closing cones' arrays) and read-only points each compiled the query kernel once more."""
    warm_up()
    after_warm_up = compiled_signatures()
    rng = np.random.default_rng(3)
    sphere = trimesh.creation.icosphere(subdivisions=3)
    scene_vertices = rng.uniform(-1, 1, (900, 3))   # 300 loose triangles: cones would reach everywhere
    meshes = {
        "open, cones kept": (sphere.vertices, sphere.faces[sphere.triangles_center[:, 2] > 0]),
        "soup, signs afresh": (scene_vertices, np.arange(900).reshape(-1, 3)),
        "closed, read-only int32": (np.asarray(sphere.vertices), sphere.faces.astype(np.int32)),
    }
    trees = {}
    for name, (vertices, faces) in meshes.items():
        vertices, faces = np.array(vertices), np.array(faces)
        vertices.flags.writeable = faces.flags.writeable = False
        sdf = MeshSDF(vertices, faces, threads=2)
        trees[name] = sdf._tree
        read_only = rng.uniform(-1, 1, (3000, 3))
        read_only.flags.writeable = False
        for points in (read_only, read_only.astype(np.float32), np.asfortranarray(read_only), read_only[::2]):
            sdf.query(points)
            sdf.query(points, truncation=0.1)
            sdf.winding_number(points)
    # every path the engine has was taken
    assert trees["open, cones kept"].carried and trees["open, cones kept"].cone is not None
    assert not trees["soup, signs afresh"].carried
    assert trees["closed, read-only int32"].cone is None
    assert compiled_signatures() == after_warm_up


def test_kubik_3d_warmup_reports_kernels_ready(kubik):
    rc, out, err = kubik("3d", "warmup", "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert report["device"] == "cpu"
    assert report["ready"] >= 8   # query, winding, order, build and bound-grid kernels at least
    rc, out, err = kubik("3d", "warmup")
    assert rc == 0 and out.startswith("SDF engine ready on cpu")


def test_kubik_3d_warmup_refuses_a_device_it_cannot_run_in_one_line(kubik):
    rc, out, err = kubik("3d", "warmup", "--device", "tpu")
    assert rc == 2
    assert err.strip().count("\n") == 0 and "--device" in err and "unknown device 'tpu'" in err
