"""Headless multi-view renders of a normalised mesh with pyrender.

Backend: ``PYOPENGL_PLATFORM`` must be set before OpenGL is first imported. :func:`gl_backend`
picks EGL when an EGL vendor library is present (GPU machines, Mesa's libegl-mesa0), else OSMesa
(Debian ``libosmesa6``; it needs PyOpenGL >= 3.1.10, while pyrender pins 3.1.0). A user's own
``PYOPENGL_PLATFORM`` always wins.

Camera convention (saved in each mesh's ``views.json``):

* ``camera_to_world``: 4x4, OpenGL/glTF camera axes: the camera looks down its -Z axis, +Y is up
  in the image, +X to the right. World frame = the normalised mesh frame (Y up, right-handed).
* ``intrinsics``: pixel units, origin at the top-left pixel corner, +v downwards:
  ``u = fx * x_c / -z_c + cx``, ``v = -fy * y_c / -z_c + cy`` for a camera-frame point
  (x_c, y_c, z_c).
* ``depth``: distance along the camera's viewing axis (-z_c), 0 on background.
* ``normal``: world-space unit normal of the visible face, 0 on background.
* RGBA: alpha is 0 on background and 255 on the shape.

One renderer is reused for many meshes (creating contexts repeatedly leaks in Mesa); parallelism
comes from processes, one renderer each.
"""
from __future__ import annotations

import ctypes.util
import math
import os
from dataclasses import asdict, dataclass

import numpy as np


class RenderBackendError(RuntimeError):
    """No OpenGL context can be made here (missing library, no driver for the chosen platform)."""


def gl_backend() -> str:
    """Set and return ``PYOPENGL_PLATFORM``: the user's value, else 'egl' if available, else 'osmesa'."""
    if not os.environ.get("PYOPENGL_PLATFORM"):
        os.environ["PYOPENGL_PLATFORM"] = "egl" if ctypes.util.find_library("EGL") else "osmesa"
    # pyrender imports pyglet (for its viewer); headless, pyglet must not look for an X server.
    os.environ.setdefault("PYGLET_HEADLESS", "true")
    return os.environ["PYOPENGL_PLATFORM"]


def gl_unavailable_reason() -> str | None:
    """Why rendering cannot work here (None when it can): missing library or PyOpenGL too old."""
    backend = gl_backend()
    if backend == "osmesa":
        if not ctypes.util.find_library("OSMesa"):
            return "no OpenGL backend: install Debian's libosmesa6 (or libegl1 + libegl-mesa0 for EGL)"
        from importlib.metadata import version

        parts = tuple(int(p) for p in version("PyOpenGL").split(".")[:3] if p.isdigit())
        if parts < (3, 1, 10):
            return (f"OSMesa rendering needs PyOpenGL >= 3.1.10 (installed: {version('PyOpenGL')}); "
                    "run: pip install 'PyOpenGL>=3.1.10'")
    return None


@dataclass(frozen=True)
class RenderConfig:
    views: int = 12            # total views per mesh
    ring: int = 8              # of which on a fixed ring around Y (the rest random on the sphere)
    ring_elevation_deg: float = 20.0
    resolution: int = 256
    yfov_deg: float = 40.0
    distance: float | None = None  # camera distance from the origin; None: per mesh, the closest
                                   # distance at which the mesh's bounding sphere (about the origin) fits the view
    depth: bool = True
    normals: bool = True
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def look_at(eye: np.ndarray, target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """Camera-to-world matrix (OpenGL axes) for a camera at ``eye`` looking at ``target``."""
    eye = np.asarray(eye, np.float64)
    forward = np.asarray(target, np.float64) - eye
    forward /= np.linalg.norm(forward)
    up = np.asarray(up, np.float64)
    if abs(forward @ up) > 0.999:  # looking straight up or down
        up = np.array([0.0, 0.0, -1.0 if forward[1] < 0 else 1.0])
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    true_up = np.cross(right, forward)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, true_up, -forward, eye
    return pose


def fit_distance(mesh, config: RenderConfig) -> float:
    """Camera distance: ``config.distance``, or the one at which no view can crop the mesh."""
    if config.distance is not None:
        return float(config.distance)
    radius = float(np.linalg.norm(np.asarray(mesh.vertices), axis=1).max())
    return 1.02 * radius / math.sin(math.radians(config.yfov_deg) / 2.0)


def camera_poses(config: RenderConfig, distance: float | None = None) -> list[np.ndarray]:
    """``ring`` views evenly around Y at a fixed elevation, then random views on the sphere."""
    distance = float(distance if distance is not None else config.distance)
    rng = np.random.default_rng(config.seed)
    poses = []
    elevation = math.radians(config.ring_elevation_deg)
    for i in range(min(config.ring, config.views)):
        azimuth = 2.0 * math.pi * i / config.ring
        poses.append(_orbit(azimuth, elevation, distance))
    for _ in range(config.views - len(poses)):
        azimuth = rng.uniform(0.0, 2.0 * math.pi)
        elevation = math.asin(rng.uniform(-0.5, 0.9))  # mostly from above, as photos are
        poses.append(_orbit(azimuth, elevation, distance))
    return poses


def _orbit(azimuth: float, elevation: float, distance: float) -> np.ndarray:
    eye = distance * np.array([math.cos(elevation) * math.sin(azimuth), math.sin(elevation),
                               math.cos(elevation) * math.cos(azimuth)])
    return look_at(eye)


def intrinsics(config: RenderConfig) -> dict:
    f = 0.5 * config.resolution / math.tan(math.radians(config.yfov_deg) / 2.0)
    c = config.resolution / 2.0
    return {"fx": f, "fy": f, "cx": c, "cy": c, "width": config.resolution,
            "height": config.resolution, "yfov_deg": config.yfov_deg}


class MeshRenderer:
    """Renders RGBA, depth and normal maps of meshes; keep one per process and reuse it."""

    def __init__(self, config: RenderConfig):
        reason = gl_unavailable_reason()
        if reason:
            raise RenderBackendError(reason)
        import pyrender

        self.config = config
        self._pyrender = pyrender
        try:
            self._renderer = pyrender.OffscreenRenderer(config.resolution, config.resolution)
        except Exception as exc:  # noqa: BLE001 - EGL/OSMesa failures come in many types
            raise RenderBackendError(
                f"cannot create an OpenGL context through {gl_backend()} ({type(exc).__name__}: {exc}); "
                "install Debian's libegl1 libegl-mesa0 libgl1-mesa-dri, or libosmesa6 with "
                "PYOPENGL_PLATFORM=osmesa") from exc

    def close(self) -> None:
        self._renderer.delete()

    def render(self, mesh) -> tuple[list[dict], dict]:
        """Render ``config.views`` views. Returns per-view arrays and the cameras as JSON data."""
        pyrender = self._pyrender
        config = self.config
        distance = fit_distance(mesh, config)
        poses = camera_poses(config, distance)
        camera = pyrender.PerspectiveCamera(yfov=math.radians(config.yfov_deg), znear=0.02 * distance,
                                            zfar=4.0 * distance)

        shaded = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[0.25, 0.25, 0.25])
        shaded.add(pyrender.Mesh.from_trimesh(_renderable(mesh), smooth=_has_smooth_normals(mesh)))
        camera_node = shaded.add(camera, pose=poses[0])
        # A key light that follows the camera from above-left, and a fill from the opposite side.
        key = shaded.add(pyrender.DirectionalLight(color=np.ones(3), intensity=3.0), pose=poses[0])
        fill = shaded.add(pyrender.DirectionalLight(color=np.ones(3), intensity=1.0), pose=poses[0])

        normal_scene = None
        if config.normals:
            normal_scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[1.0, 1.0, 1.0])
            normal_scene.add(pyrender.Mesh.from_trimesh(_normal_coloured(mesh), smooth=False))
            normal_camera = normal_scene.add(camera, pose=poses[0])

        views = []
        for pose in poses:
            shaded.set_pose(camera_node, pose)
            shaded.set_pose(key, pose @ _rotation(-35.0, 25.0))
            shaded.set_pose(fill, pose @ _rotation(40.0, -150.0))
            color, depth = self._renderer.render(shaded)
            view = {"rgba": np.dstack([color[..., :3], np.where(depth > 0, 255, 0).astype(np.uint8)])}
            if config.depth:
                view["depth"] = depth.astype(np.float32)
            if normal_scene is not None:
                normal_scene.set_pose(normal_camera, pose)
                encoded, ndepth = self._renderer.render(normal_scene, flags=pyrender.RenderFlags.FLAT)
                normal = encoded[..., :3].astype(np.float32) / 127.5 - 1.0
                normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-6)
                normal[ndepth <= 0] = 0.0
                view["normal"] = normal
            views.append(view)
        cameras = {"convention": "camera_to_world, OpenGL axes (camera looks down -Z, +Y up)",
                   "intrinsics": intrinsics(config), "distance": distance,
                   "camera_to_world": [p.tolist() for p in poses]}
        return views, cameras


def _rotation(pitch_deg: float, yaw_deg: float) -> np.ndarray:
    """A rotation in the camera frame, to place lights relative to the viewer."""
    p, y = math.radians(pitch_deg), math.radians(yaw_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    out = np.eye(4)
    out[:3, :3] = ry @ rx
    return out


def _renderable(mesh):
    """``mesh``, or a copy in the material's plain colour when it has a texture but no UVs
    (OBJ files that name a texture and give no coordinates; pyrender's shader rejects them)."""
    import trimesh

    visual = mesh.visual
    if isinstance(visual, trimesh.visual.TextureVisuals) and (visual.uv is None or len(visual.uv) != len(mesh.vertices)):
        mesh = mesh.copy()
        mesh.visual = visual.to_color()
    return mesh


def _has_smooth_normals(mesh) -> bool:
    """Smooth shading only where the mesh shares vertices between faces (not a triangle soup)."""
    return len(mesh.vertices) < 3 * len(mesh.faces)


def _normal_coloured(mesh):
    """A copy of ``mesh`` whose faces are coloured by their world normal, (n + 1) / 2 in 0..255."""
    import trimesh

    colours = np.clip((np.asarray(mesh.face_normals) + 1.0) * 127.5, 0, 255).astype(np.uint8)
    plain = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    plain.visual = trimesh.visual.ColorVisuals(plain, face_colors=np.column_stack([colours, np.full(len(colours), 255, np.uint8)]))
    return plain
