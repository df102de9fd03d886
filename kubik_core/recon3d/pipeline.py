"""Image to 3D inference: model files, image -> shape latent, mesh -> shape latent, latent -> SDF.

The steps, each usable on its own (the ComfyUI nodes call them one per node):

1. :func:`load_model` a ``kubik3d`` model file (:mod:`.models.shape_model`);
2. :func:`image_to_latent`: prepared pixels (:func:`.image_input.prepare_images`) -> image tokens
   -> the flow sampler (:mod:`.sampler` integrating :mod:`.models.flow`'s network) -> a :class:`ShapeLatent`;
   or :func:`mesh_to_latent`: a mesh -> surface points -> the VAE encoder -> a :class:`ShapeLatent`;
3. :func:`sdf_function`: a latent -> a callable giving signed distances of query points;
4. :func:`.mesh.extract.extract_mesh` turns that callable into a mesh; :func:`.mesh.export.save_mesh`
   writes it.

:func:`reconstruct` chains all of them for ``kubik 3d reconstruct`` and the demo.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .models.shape_model import Kubik3DModel, ModelFileError, build_model, load_model, save_model
from .sampler import sample

__all__ = ["Kubik3DModel", "ModelFileError", "ShapeLatent", "build_model", "load_model", "save_model",
           "image_to_latent", "mesh_to_latent", "sdf_function", "reconstruct"]

QUERY_CHUNK = 65536
_BIAS_ELEMENTS = 1 << 25   # per query batch: the decoder's distance bias is [heads, points, tokens] floats


def query_chunk_size(model: Kubik3DModel) -> int:
    """Points per decoder call: QUERY_CHUNK, fewer for models with many tokens and heads so the
    attention bias stays under 128 MiB (tiny: 65,536 points; base, 512 tokens x 8 heads: 8,192)."""
    heads = model.config.vae.heads
    return max(1024, min(QUERY_CHUNK, _BIAS_ELEMENTS // (model.vae.latent_tokens * heads)))


@dataclass
class ShapeLatent:
    """Shape latents [B, tokens, channels] (VAE units) and the model that can decode them."""

    latents: torch.Tensor
    model: Kubik3DModel

    def __len__(self) -> int:
        return self.latents.shape[0]


def _require_finite(latents: torch.Tensor, what: str) -> None:
    if not torch.isfinite(latents).all():
        raise ValueError(f"{what} produced NaN or infinite latents; the model file is probably from a "
                         "diverged training run")


def image_to_latent(model: Kubik3DModel, pixels: torch.Tensor, *, seed: int = 0, steps: int | None = None,
                    cfg: float | None = None, sampler: str | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    should_stop: Callable[[], None] | None = None) -> ShapeLatent:
    """Prepared pixels [B, 3, S, S] (0..1, object centred as in training) -> one latent per image.
    ``steps``/``cfg``/``sampler`` default to the model config's ``sampling`` section."""
    if model.kind != "image-to-shape":
        raise ModelFileError(f"{model.name} is a {model.kind!r} model: it has no image encoder or flow; "
                             "load a model written by `kubik 3d train-flow`")
    if pixels.ndim != 4 or pixels.shape[1] != 3:
        raise ValueError(f"pixels must be [B, 3, H, W], got {tuple(pixels.shape)}")
    defaults = model.config.sampling
    device = model.device
    pixels = pixels.to(device, torch.float32)
    if pixels.shape[-1] != model.image_size or pixels.shape[-2] != model.image_size:
        pixels = torch.nn.functional.interpolate(pixels, size=(model.image_size,) * 2, mode="bilinear",
                                                 antialias=True, align_corners=False)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    shape = (pixels.shape[0], model.vae.latent_tokens, model.vae.token_channels)
    with torch.no_grad():
        context = model.image_encoder(pixels)
        normalized = sample(model.flow, context, shape, steps=defaults.steps if steps is None else steps,
                            cfg=defaults.cfg if cfg is None else cfg, sampler=sampler or defaults.sampler,
                            generator=generator, progress=progress, should_stop=should_stop)
        latents = model.denormalize_latents(normalized)
    _require_finite(latents, "sampling")
    return ShapeLatent(latents, model)


def surface_points(mesh, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The VAE's input: ``count`` area-weighted surface points and normals of a mesh that is
    already in the normalised frame."""
    from .mesh.surface import sample_surface

    points, normals = sample_surface(mesh, count, np.random.default_rng(seed))
    return points.astype(np.float32), normals.astype(np.float32)


def mesh_to_latent(model: Kubik3DModel, vertices, faces, *, seed: int = 0) -> ShapeLatent:
    """A triangle mesh (vertices [V, 3], faces [F, 3], any units; cleaned and normalised here as
    in training) -> its latent (the posterior mean). ``seed`` picks the surface samples."""
    from types import SimpleNamespace

    from .mesh.io import clean_mesh, normalize

    mesh, _ = normalize(clean_mesh(SimpleNamespace(vertices=vertices, faces=faces)))
    points, normals = surface_points(mesh, model.config.vae.input_points, seed)
    device = model.device
    with torch.no_grad():
        mean, _ = model.vae.encode(torch.from_numpy(points)[None].to(device),
                                   torch.from_numpy(normals)[None].to(device))
    _require_finite(mean, "encoding")
    return ShapeLatent(mean, model)


def sdf_function(latent: ShapeLatent, index: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """Signed distance (negative inside, normalised frame) of query points [N, 3] for shape
    ``index`` of the latent batch. The decoder's self-attention runs once, here."""
    if not 0 <= index < len(latent):
        raise IndexError(f"shape index {index} out of range for a batch of {len(latent)}")
    model = latent.model
    with torch.no_grad():
        decoded = model.vae.decode(latent.latents[index:index + 1].to(model.device))
    chunk_size = query_chunk_size(model)

    def query(points: torch.Tensor) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for chunk in torch.split(points.to(model.device, torch.float32), chunk_size):
                out.append(model.vae.query(decoded, chunk[None])[0])
        return torch.cat(out) if out else points.new_zeros(0)

    return query


def reconstruct(image_path: str | Path, output: str | Path, *, model: Kubik3DModel, seed: int = 0,
                steps: int | None = None, cfg: float | None = None, sampler: str | None = None,
                resolution: int = 128, hierarchical: bool = True, progress=None) -> dict:
    """One image file -> one mesh file (format from the suffix). Returns a summary dict."""
    import time
    import warnings

    from PIL import Image

    from .image_input import prepare_images
    from .mesh.export import save_mesh
    from .mesh.extract import extract_mesh

    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(image_path) as im:
                image = np.asarray(im.convert("RGBA") if "A" in im.getbands() else im.convert("RGB"))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ValueError(f"image {image_path} is too large to read ({exc})") from None
    except OSError as exc:
        raise ValueError(f"cannot read image {image_path}: {exc}") from None
    prepared = prepare_images(image, size=model.image_size)
    latent = image_to_latent(model, prepared.pixels, seed=seed, steps=steps, cfg=cfg, sampler=sampler,
                             progress=progress)
    sampled = time.perf_counter()
    mesh = extract_mesh(sdf_function(latent), resolution, hierarchical=hierarchical, device=model.device)
    path = save_mesh(mesh.vertices, mesh.faces, output)
    return {"image": str(image_path), "output": str(path), "model": model.name, "seed": seed,
            "resolution": resolution, "vertices": int(len(mesh.vertices)), "faces": int(len(mesh.faces)),
            "sdf_queries": int(mesh.queries), "sample_seconds": round(sampled - started, 3),
            "seconds": round(time.perf_counter() - started, 3)}
