"""``kubik 3d encode``: every rendered view of every shape -> a VAE posterior (the flow's training data).

Each render is paired with the shape as that picture shows it (:func:`..data.shapes.view_frame`:
turned about Y to face the camera, rescaled to fit the box), so the flow learns a mapping a
single picture determines. Tokens are stored in the canonical order of
:func:`..models.vae.canonical_token_order` (the flow learns per-position embeddings).

Output: one safetensors file with ``mean`` and ``std`` [S, views, tokens, channels] (float32), the
frames ``rotation`` [S, views, 3, 3] and ``scale`` [S, views], and metadata ``ids`` (JSON list,
``<dataset folder name>/<mesh id>``), ``datasets`` (absolute folders), ``vae`` (absolute path of
the VAE file) and ``vae_config``. The flow trainer samples
``mean + std * noise`` each step, so it sees the same spread of latents the VAE decoder learned
to read.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ...common.bounded_json import BoundedJSONError
from ...common.bounded_json import loads as bounded_loads
from ..data.shapes import ShapeSet
from ..models.shape_model import load_model
from ..models.vae import canonical_token_order
from ..storage import write_bytes_atomic


def encode_datasets(datasets, vae_path, output, *, device: str = "cpu", batch: int = 8, seed: int = 0,
                    show_progress: bool = True) -> dict:
    from safetensors.torch import save
    from tqdm import tqdm

    started = time.perf_counter()
    output = Path(output)
    if output.suffix != ".safetensors":
        raise ValueError(f"the latents file must end in .safetensors, not {output.name!r}")
    model = load_model(vae_path, device)
    shapes = ShapeSet.load(datasets, split="all")
    views = min(len(v) for v in shapes.views)
    if views == 0:
        raise ValueError("some shapes have no renders; preprocess with --views > 0: the flow model learns "
                         "from pictures")
    rotations, scales = shapes.view_frames(views)
    count = model.config.vae.input_points
    generator = torch.Generator().manual_seed(seed)
    means, stds = [], []
    with torch.no_grad():
        for start in tqdm(range(0, len(shapes), batch), desc="encode", disable=not show_progress):
            rows = torch.arange(start, min(start + batch, len(shapes)))
            pick = torch.randint(0, shapes.arrays["surface_points"].shape[1], (len(rows), count), generator=generator)
            points = shapes.arrays["surface_points"][rows[:, None], pick]            # [b, n, 3]
            normals = shapes.arrays["surface_normals"][rows[:, None], pick]
            rot = rotations[rows]                                                     # [b, V, 3, 3]
            turned = torch.einsum("bvij,bnj->bvni", rot, points) * scales[rows][:, :, None, None]
            turned_normals = torch.einsum("bvij,bnj->bvni", rot, normals)
            mean, logvar = model.vae.encode(turned.flatten(0, 1).to(model.device),
                                            turned_normals.flatten(0, 1).to(model.device))
            order = canonical_token_order(mean)[..., None].expand_as(mean)
            mean, logvar = mean.gather(1, order), logvar.gather(1, order)
            means.append(mean.cpu().unflatten(0, (len(rows), views)))
            stds.append((0.5 * logvar).exp().cpu().unflatten(0, (len(rows), views)))
    mean, std = torch.cat(means), torch.cat(stds)
    if not torch.isfinite(mean).all():
        raise ValueError(f"the VAE {vae_path} produced NaN latents: the checkpoint is broken")
    folders = [str(Path(d).resolve()) for d in ([datasets] if isinstance(datasets, (str, Path)) else datasets)]
    metadata = {"ids": json.dumps(shapes.ids), "datasets": json.dumps(folders),
                "vae": str(Path(vae_path).resolve()), "vae_config": json.dumps(model.config.vae.to_dict())}
    tensors = {"mean": mean.contiguous(), "std": std.contiguous(), "rotation": rotations.contiguous(),
               "scale": scales.contiguous()}
    write_bytes_atomic(output, save(tensors, metadata=metadata))
    return {"output": str(output), "shapes": len(shapes), "views": views, "tokens": mean.shape[2],
            "channels": mean.shape[3], "seconds": round(time.perf_counter() - started, 1)}


def read_latents(path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata with ``ids``/``datasets``/``vae_config`` decoded) of a latents file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"latents file {path} does not exist; make it with `kubik 3d encode`")
    try:
        with safe_open(str(path), "pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    except Exception as exc:  # safetensors' own error types
        raise ValueError(f"{path} is not a readable safetensors file: {exc}") from exc
    if not {"ids", "datasets", "vae"} <= set(metadata) or not {"mean", "std", "rotation", "scale"} <= set(tensors):
        raise ValueError(f"{path} is not a latents file from `kubik 3d encode` "
                         "(missing ids/datasets/vae/mean/std/rotation/scale)")
    try:
        for key in ("ids", "datasets", "vae_config"):
            metadata[key] = bounded_loads(metadata.get(key, "null"), max_depth=8)
    except BoundedJSONError as exc:
        raise ValueError(f"{path}: its {key} entry is not usable JSON ({exc})") from None
    _check_latents(path, tensors, metadata)
    return tensors, metadata


def _check_latents(path: Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """Shapes and entries that agree with each other, as `kubik 3d encode` writes them."""
    from ..models.config import VAEConfig

    ids, datasets = metadata["ids"], metadata["datasets"]
    if not (isinstance(ids, list) and all(isinstance(i, str) for i in ids) and len(set(ids)) == len(ids)):
        raise ValueError(f"{path}: its ids entry must be a list of distinct shape ids")
    if not (isinstance(datasets, list) and datasets and all(isinstance(d, str) for d in datasets)):
        raise ValueError(f"{path}: its datasets entry must be a list of dataset folders")
    if metadata["vae_config"] is not None:
        VAEConfig.from_dict(metadata["vae_config"], f"{path}: its vae_config")
    mean, std, rotation, scale = (tensors[k] for k in ("mean", "std", "rotation", "scale"))
    shapes, views = len(ids), (mean.shape[1] if mean.ndim == 4 else -1)
    expected = {"mean": (shapes, views, *mean.shape[2:]), "std": tuple(mean.shape), "rotation": (shapes, views, 3, 3),
                "scale": (shapes, views)}
    for key, shape in expected.items():
        tensor = tensors[key]
        if mean.ndim != 4 or tuple(tensor.shape) != shape or not tensor.is_floating_point():
            raise ValueError(f"{path}: tensor {key} has shape {list(tensor.shape)} ({tensor.dtype}); with "
                             f"{shapes} ids it must be float {list(shape)}; make the file again with `kubik 3d encode`")
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{path}: tensor {key} holds NaN or infinite values; make the file again with "
                             "`kubik 3d encode`")
