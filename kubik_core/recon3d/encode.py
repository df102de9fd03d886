"""``kubik 3d encode``: every rendered view of every shape -> a VAE posterior (the flow's training data).

Each render is paired with the shape as that picture shows it (:func:`.shape_data.view_frame`:
turned about Y to face the camera, rescaled to fit the box), so the flow learns a mapping a
single picture determines. Tokens are stored in the canonical order of
:func:`.vae.canonical_token_order` (the flow learns per-position embeddings). Output: one safetensors file with ``mean`` and ``std``
[S, views, tokens, channels] (float32), the frames ``rotation`` [S, views, 3, 3] and ``scale``
[S, views], and metadata ``ids`` (JSON list, ``<dataset folder name>/<mesh id>``), ``datasets`` (absolute
folders), ``vae`` (absolute path of the VAE file) and ``vae_config``. The flow trainer samples
``mean + std * noise`` each step, so it sees the same spread of latents the VAE decoder learned
to read.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .shape_data import ShapeSet
from .shape_model import load_model
from .storage import write_bytes_atomic
from .vae import canonical_token_order


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
    count = model.config["vae"]["input_points"]
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
                "vae": str(Path(vae_path).resolve()), "vae_config": json.dumps(model.config["vae"])}
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
    for key in ("ids", "datasets", "vae_config"):
        metadata[key] = json.loads(metadata[key])
    return tensors, metadata
