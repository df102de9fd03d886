"""Training data for the image-to-3D model, read from ``kubik 3d preprocess``/``synth`` folders.

:class:`ShapeSet` loads every finished shape of one or more dataset folders into memory as
stacked tensors (a few hundred KB per shape), so a training step gathers its batch with one
indexing operation instead of reading files. Shapes are split into train and held-out sets by a
stable hash of their id, so the split never changes when shapes are added or the order differs.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..storage import load_json_object

QUERY_NEAR, QUERY_UNIFORM, QUERY_SURFACE = 0, 1, 2  # what each VAE training query point is
SAMPLE_KEYS = ("surface_points", "surface_normals", "near_points", "near_sdf", "uniform_points", "uniform_sdf")


def is_held_out(shape_id: str, percent: float) -> bool:
    """A shape is held out when the first bytes of sha1(id) fall below ``percent`` %."""
    value = int.from_bytes(hashlib.sha1(shape_id.encode()).digest()[:4], "little") / 2 ** 32
    return value < percent / 100.0


def dataset_entries(root: str | Path) -> list[dict]:
    """The finished shapes of a dataset folder: {"id", "dir", "samples": npz path, "views": [png
    paths], "cameras": [4x4]}; of a shard folder, the same with the files' bytes for paths.

    The folder's JSON files are read as hostile input (bounded JSON, checked types) and every
    name they give must be a plain file or folder name inside the dataset folder."""
    from .shards import is_shard_folder, shard_entries

    root = Path(root)
    if is_shard_folder(root):  # tar shards: the same entries, files as bytes (:mod:`.shards`)
        return shard_entries(root)
    manifest = root / "manifest.json"
    if not manifest.is_file():
        raise ValueError(f"{root} is not a dataset folder (no manifest.json) nor a shard folder (no "
                         "shards.json); make one with `kubik 3d preprocess` or `kubik 3d synth`")
    meshes = load_json_object(manifest).get("meshes")
    if not isinstance(meshes, list) or not all(isinstance(m, dict) and _plain(m.get("id")) for m in meshes):
        raise ValueError(f"{manifest}: 'meshes' must be a list of entries with plain folder names as ids; "
                         "rebuild it with `kubik 3d preprocess`")
    entries = []
    for item in meshes:
        folder = root / item["id"]
        if not (folder / "meta.json").is_file():
            continue
        views = load_json_object(folder / "meta.json").get("views") or {}
        names = (views.get("rgba") or []) if isinstance(views, dict) else None
        cameras = (views.get("camera_to_world") or []) if isinstance(views, dict) else None
        if not isinstance(names, list) or not all(_plain(n) for n in names) or not isinstance(cameras, list):
            raise ValueError(f"{folder / 'meta.json'}: its views must list plain file names and cameras; "
                             "preprocess the mesh again")
        entries.append({"id": f"{root.name}/{item['id']}", "dir": folder, "samples": folder / "samples.npz",
                        "views": [folder / n for n in names], "cameras": cameras})
    return entries


def _plain(name) -> bool:
    """A file or folder name that stays where it is put (no separator, not . or ..)."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name \
        and "\x00" not in name


@dataclass
class ShapeSet:
    """Stacked sample tensors of many shapes: ``arrays[key]`` is [S, n, ...] for SAMPLE_KEYS and
    ``surface_sharp`` (bool: the point was sampled on a sharp edge, not by area)."""

    ids: list[str]
    dirs: list[Path]             # each shape's folder, or the tar shard holding it
    views: list[list[Path | bytes]]  # render paths, or the PNG bytes of a shard (read with .shards.open_view)
    arrays: dict[str, torch.Tensor] = field(default_factory=dict)
    cameras: list[list] = field(default_factory=list)  # per shape: camera_to_world 4x4 per view

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def load(cls, roots, *, split: str = "train", holdout_percent: float = 5.0,
             limit: int | None = None) -> "ShapeSet":
        """Shapes of ``roots`` (dataset folders) in ``split`` ("train", "val" or "all")."""
        if split not in ("train", "val", "all"):
            raise ValueError(f"split must be train, val or all, not {split!r}")
        entries = [e for root in ([roots] if isinstance(roots, (str, Path)) else roots)
                   for e in dataset_entries(root)]
        if split != "all":
            entries = [e for e in entries if is_held_out(e["id"], holdout_percent) == (split == "val")]
        entries = entries[:limit] if limit else entries
        if not entries:
            raise ValueError(f"no finished shapes in the {split} split of {roots}")
        loaded = []
        for entry in entries:
            samples = entry["samples"]
            where = samples if isinstance(samples, Path) else f"{entry['dir']}: {entry['id']}'s samples.npz"
            try:
                with np.load(io.BytesIO(samples) if isinstance(samples, bytes) else samples) as data:
                    loaded.append({k: data[k] for k in (*SAMPLE_KEYS, "surface_sharp")})
            except KeyError as exc:
                raise ValueError(f"{where}: lacks the array {exc}; preprocess the mesh again") from None
            except (OSError, ValueError, zipfile.BadZipFile):  # never loaded as a pickle
                raise ValueError(f"{where}: not a usable samples file (damaged, or not written by "
                                 "`kubik 3d preprocess`); preprocess the mesh again") from None
        arrays = {}
        count = min(len(item["surface_points"]) for item in loaded)
        arrays["surface_sharp"] = torch.from_numpy(np.stack([item["surface_sharp"][:count] for item in loaded]))
        for key in SAMPLE_KEYS:  # datasets made with different counts: keep the smallest count
            count = min(len(item[key]) for item in loaded)
            arrays[key] = torch.from_numpy(np.stack([item[key][:count] for item in loaded]).astype(np.float32))
        return cls([e["id"] for e in entries], [e["dir"] for e in entries], [e["views"] for e in entries], arrays,
                   [e["cameras"] for e in entries])

    def view_frames(self, views: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotations [S, V, 3, 3] and scales [S, V] of :func:`view_frame` for the first ``views``
        renders of every shape."""
        rotations = torch.empty(len(self), views, 3, 3)
        scales = torch.empty(len(self), views)
        for i, cameras in enumerate(self.cameras):
            if len(cameras) < views:
                raise ValueError(f"{self.ids[i]} has {len(cameras)} cameras, {views} are needed")
            for v in range(views):
                rotations[i, v], scales[i, v] = view_frame(cameras[v], self.arrays["surface_points"][i])
        return rotations, scales

    def vae_batch(self, shape_index: torch.Tensor, input_points: int, query_points: int,
                  generator: torch.Generator) -> dict[str, torch.Tensor]:
        """For each shape: ``input_points`` random surface points + normals (the encoder's input)
        and ``query_points`` SDF targets: half near-surface, a quarter uniform, a quarter on the
        surface itself (distance 0); ``kind`` says which (QUERY_NEAR/UNIFORM/SURFACE)."""
        b = len(shape_index)
        rows = shape_index[:, None]

        def pick(key: str, k: int) -> torch.Tensor:  # k random sample indices per shape
            return torch.randint(0, self.arrays[key].shape[1], (b, k), generator=generator)

        surface = pick("surface_points", input_points)
        n_near, n_uniform = query_points // 2, query_points // 4
        n_surface = query_points - n_near - n_uniform
        near, uniform, on = pick("near_points", n_near), pick("uniform_points", n_uniform), pick("surface_points", n_surface)
        a = self.arrays
        queries = torch.cat([a["near_points"][rows, near], a["uniform_points"][rows, uniform],
                             a["surface_points"][rows, on]], dim=1)
        targets = torch.cat([a["near_sdf"][rows, near], a["uniform_sdf"][rows, uniform],
                             torch.zeros(b, n_surface)], dim=1)
        kind = torch.zeros(b, query_points, dtype=torch.uint8)  # QUERY_NEAR
        kind[:, n_near:n_near + n_uniform] = QUERY_UNIFORM
        kind[:, n_near + n_uniform:] = QUERY_SURFACE
        return {"points": a["surface_points"][rows, surface], "normals": a["surface_normals"][rows, surface],
                "queries": queries, "targets": targets, "kind": kind}


def view_frame(camera_to_world, surface_points: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The frame a picture shows: the shape turned about Y so that the camera sits on +Z (the
    object faces the viewer, Y stays up), then scaled so it fits [-0.95, 0.95]^3 again.
    ``p_view = scale * rotation @ p``. The image-to-shape model is trained to output shapes in
    this frame, which a single picture determines, unlike the mesh file's own orientation."""
    position = torch.as_tensor(camera_to_world, dtype=torch.float32)[:3, 3]
    yaw = torch.atan2(position[0], position[2])
    c, s = torch.cos(-yaw), torch.sin(-yaw)
    rotation = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    extent = (surface_points @ rotation.T).abs().max().item()
    return rotation, 0.95 / max(extent, 1e-6)
