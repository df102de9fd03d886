"""The CPU SDF engine on every kind of mesh, against libigl's signed distance in the same run.

Real collections are mostly not closed solids, so the engine is measured per mesh class on meshes
that ship in packages or are made here (nobody tuned the engine for them):

* closed: pybullet's soccer ball, mini cheetah body (14 closed shells), a subdivided icosphere;
* open, few holes: pymeshfix's holed Stanford bunny, xarm6 link2, pybullet's mug;
* open sheets: pymeshfix's planar mesh, a wavy 200 x 200 height field, a half sphere;
* many bodies: Franka link6 (42 open bodies), the kiva shelf pod (228 bodies), 47 overlapping
  spheres and boxes, pybullet's samurai monastery scene (5,314 open parts, ``--big``);
* soups: the icosphere with every triangle's corners unshared, 4,000 random triangles;
* flipped faces: the icosphere and pybullet's duck with 10% of their faces turned over.

Each mesh is normalised into [-0.95, 0.95]^3 and passed to ``MeshSDF`` as it is (no cleaning:
the worst case). Points: 200k, half near the surface (Gaussian offsets 0.005 / 0.02 / 0.05), half
uniform in [-1, 1]^3, as ``kubik 3d preprocess`` queries. kubik's rate is the median of
``--repeats`` queries of all points (2 threads); libigl's (``igl.signed_distance``, single
threaded, its exact hierarchical winding number and its fast winding number as sign) the median
of as many queries of the first ``--igl-points`` of them (libigl's exact sign costs 0.1-10 ms a
point). Signs and distances are compared on those points against libigl's exact winding number
(inside where w > 1/2, from ``signed_distance``) and its exact distances
(``point_mesh_squared_distance``). The load average is printed before and after
each mesh: the machine may be shared, so only ratios within a line mean much.

``--cones-always`` gives every open mesh its closing cones (signs carried through them), which
the engine leaves off where they would reach nearly everywhere (``CONES_ALWAYS``): run it beside
a plain run to see what that rule saves on open sheets and many bodies.

    python benchmarks/sdf_mesh_classes.py [--points 200000] [--igl-points 5000] [--repeats 3] [--big]
        [--only WORD ...] [--cones-always] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _normalised(vertices, faces):
    vertices = np.asarray(vertices, np.float64)
    lo, hi = vertices.min(0), vertices.max(0)
    return (vertices - (lo + hi) / 2) / ((hi - lo).max() / 2) * 0.95, np.asarray(faces, np.int64)


def _load(path):
    import trimesh

    mesh = trimesh.load(path, force="mesh", process=False)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def _unshared(vertices, faces):
    """Every triangle with corners of its own: a soup with the same geometry."""
    return vertices[faces].reshape(-1, 3), np.arange(3 * len(faces)).reshape(-1, 3)


def _flipped(vertices, faces, share=0.1, seed=0):
    faces = faces.copy()
    turn = np.random.default_rng(seed).random(len(faces)) < share
    faces[turn] = faces[turn][:, ::-1]
    return vertices, faces


def meshes(big: bool) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """name -> (class, vertices, faces), all normalised."""
    import pybullet_data
    import pymeshfix
    import trimesh

    data = Path(pybullet_data.getDataPath())
    fix = Path(pymeshfix.__file__).parent / "examples"
    sphere = trimesh.creation.icosphere(subdivisions=5)          # 20,480 faces
    grid = 201
    x, y = np.meshgrid(np.linspace(-1, 1, grid), np.linspace(-1, 1, grid), indexing="ij")
    wave_v = np.stack([x, y, 0.2 * np.sin(3 * x) * np.cos(2 * y)], -1).reshape(-1, 3)
    idx = np.arange(grid * grid).reshape(grid, grid)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    wave_f = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    upper = sphere.faces[sphere.vertices[sphere.faces].mean(1)[:, 2] > 0]
    rng = np.random.default_rng(1)
    parts = []
    for k in range(47):
        centre = rng.uniform(-0.7, 0.7, 3)
        part = (trimesh.creation.icosphere(subdivisions=3, radius=rng.uniform(0.08, 0.25)) if k % 2
                else trimesh.creation.box(extents=rng.uniform(0.1, 0.4, 3)))
        part.apply_translation(centre)
        parts.append(part)
    bodies = trimesh.util.concatenate(parts)
    soup_v = rng.uniform(-1, 1, (4000, 1, 3)) + rng.normal(scale=0.05, size=(4000, 3, 3))
    cases = {
        "soccerball.obj": ("closed", *_load(data / "soccerball.obj")),
        "mini_body.obj (14 shells)": ("closed", *_load(data / "mini_cheetah/meshes/mini_body.obj")),
        "icosphere": ("closed", sphere.vertices, sphere.faces),
        "holed bunny": ("open, few holes", *_load(fix / "StanfordBunny.ply")),
        "xarm6 link2.stl": ("open, few holes", *_load(data / "xarm/xarm_description/meshes/xarm6/visual/link2.stl")),
        "mug.obj": ("open, few holes", *_load(data / "objects/mug.obj")),
        "planar_mesh.ply": ("open sheet", *_load(fix / "planar_mesh.ply")),
        "wavy height field": ("open sheet", wave_v, wave_f),
        "half sphere": ("open sheet", sphere.vertices, upper),
        "franka link6.obj (42 bodies)": ("many bodies", *_load(data / "franka_panda/meshes/visual/link6.obj")),
        "kiva pod_lowres.stl (228)": ("many bodies", *_load(data / "kiva_shelf/meshes/pod_lowres.stl")),
        "47 spheres and boxes": ("many bodies", bodies.vertices, bodies.faces),
        "icosphere, unshared corners": ("soup", *_unshared(sphere.vertices, sphere.faces)),
        "4,000 random triangles": ("soup", soup_v.reshape(-1, 3), np.arange(12000).reshape(-1, 3)),
        "icosphere, 10% flipped": ("flipped faces", *_flipped(sphere.vertices, sphere.faces)),
        "duck.obj, 10% flipped": ("flipped faces", *_flipped(*_load(data / "duck.obj"))),
    }
    if big:
        cases["samurai_monastry.obj (5,314 parts)"] = ("many bodies", *_load(data / "samurai_monastry.obj"))
    return {name: (kind, *_normalised(v, f)) for name, (kind, v, f) in cases.items()}


def make_points(vertices, faces, count: int, seed: int = 0) -> np.ndarray:
    import trimesh

    rng = np.random.default_rng(seed)
    near = count // 2
    base, _ = trimesh.sample.sample_surface(trimesh.Trimesh(vertices, faces, process=False), near, seed=seed)
    sigma = np.array([0.005, 0.02, 0.05])[np.arange(near) % 3]
    uniform = rng.uniform(-1.0, 1.0, (count - near, 3))
    points = np.concatenate([base + rng.normal(size=base.shape) * sigma[:, None], uniform])
    return points[rng.permutation(count)]  # libigl's share (the first points) gets the same mix


def _sign_path(tree) -> str:
    """How the engine signs this mesh: carried (closed), carried through closing cones, afresh
    with w carried off 1/2 along the boundary chain's bound (a short boundary), or afresh."""
    if not tree.carried:
        return "afresh" if getattr(tree, "chain", None) is None else "chain"
    return "carried" if tree.cone is None else "cones"


def _median_rate(query, points, repeats):
    seconds = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = query(points)
        seconds.append(time.perf_counter() - start)
    return len(points) / float(np.median(seconds)), result


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--igl-points", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--big", action="store_true", help="also pybullet's 124k-face samurai scene (slow for libigl)")
    parser.add_argument("--only", nargs="*", help="mesh names containing any of these words")
    parser.add_argument("--cones-always", action="store_true",
                        help="carry every open mesh's signs through its closing cones (the engine's rule off)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    import igl

    from kubik_core.recon3d.sdf import MeshSDF, cpu

    if args.cones_always:
        cpu.CONES_ALWAYS, cpu.CONES_MIN_SETTLED = sys.maxsize, 0.0

    warm = MeshSDF(np.eye(3), np.array([[0, 1, 2]]), threads=args.threads)   # compile before any clock
    warm(np.zeros((10, 3)))
    print(f"{'class':16} {'mesh':36} {'faces':>7} {'kubik M/s':>9} {'igl-WN M/s':>10} {'x WN':>7} "
          f"{'igl-FWN M/s':>11} {'x FWN':>6} {'sign vs WN':>10} {'max |d| err':>11} {'build s':>7} {'signs':>7} load")
    rows = []
    for name, (kind, vertices, faces) in meshes(args.big).items():
        if args.only and not any(word in name for word in args.only):
            continue
        load_before = os.getloadavg()[0]
        points = make_points(vertices, faces, args.points)
        start = time.perf_counter()
        sdf = MeshSDF(vertices, faces, threads=args.threads)
        build = time.perf_counter() - start
        rate, signed = _median_rate(sdf, points, args.repeats)
        few = np.ascontiguousarray(points[:args.igl_points])
        exact_rate, (igl_exact, *_) = _median_rate(
            lambda p: igl.signed_distance(p, vertices, faces, sign_type=igl.SIGNED_DISTANCE_TYPE_WINDING_NUMBER),
            few, args.repeats)
        fast_rate, _ = _median_rate(
            lambda p: igl.signed_distance(p, vertices, faces, sign_type=igl.SIGNED_DISTANCE_TYPE_FAST_WINDING_NUMBER),
            few, args.repeats)
        ours = signed[:args.igl_points].astype(np.float64)
        # libigl is positive outside too; a point exactly on the mesh may get either sign there.
        agree = float(np.mean((ours < 0) == (igl_exact < 0)))
        # libigl's signed_distance itself is up to 0.8 off far from open meshes: distances are
        # checked against its exact point_mesh_squared_distance instead.
        exact_distance = np.sqrt(igl.point_mesh_squared_distance(few, vertices, faces)[0])
        error = float(np.max(np.abs(np.abs(ours) - exact_distance)))
        load_after = os.getloadavg()[0]
        row = dict(mesh=name, kind=kind, faces=len(faces), points=args.points, igl_points=args.igl_points,
                   kubik_mpts=rate / 1e6, igl_exact_mpts=exact_rate / 1e6, igl_fast_mpts=fast_rate / 1e6,
                   vs_igl_exact=rate / exact_rate, vs_igl_fast=rate / fast_rate, sign_agreement=agree,
                   max_distance_error=error, build_s=build, carried=sdf._tree.carried,
                   cones=0 if sdf._tree.cone is None else len(sdf._tree.cone.triangles), signs=_sign_path(sdf._tree),
                   load=[load_before, load_after])
        rows.append(row)
        print(f"{kind:16} {name:36} {len(faces):7d} {rate / 1e6:9.3f} {exact_rate / 1e6:10.4f} "
              f"{rate / exact_rate:7.1f} {fast_rate / 1e6:11.4f} {rate / fast_rate:6.1f} {100 * agree:9.3f}% "
              f"{error:11.1e} {build:7.2f} {_sign_path(sdf._tree):>7} {load_before:.1f}-{load_after:.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
