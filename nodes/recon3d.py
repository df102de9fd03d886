"""Image-to-3D nodes: load a model, image -> shape latent, latent -> MESH, save, mesh -> latent.

The engine is ``kubik_core.recon3d`` (pipeline, image_input, mesh/extract, mesh/export); these
classes convert ComfyUI types. Meshes leave as ComfyUI's MESH (core SaveGLB takes it) or as a
file under output/ whose output-relative path links into core Preview3D. Inside ComfyUI the model
is handed to ComfyUI's memory manager (ModelPatcher), so it is offloaded like any checkpoint;
outside it, models are kept in a small LRU cache (comfy_bridge.load_model_file). The
KUBIK_3D_MODEL value is a comfy_bridge.ManagedModel holding a kubik_core Kubik3DModel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..kubik_core.recon3d.models.config import SAMPLERS
from . import comfy_bridge

CATEGORY = "KubikAI/3D"
DEVICE_CHOICES = ["auto", "cpu"]
SAMPLER_CHOICES = list(SAMPLERS)   # the flow sampler's integrators, as the model config names them


@dataclass
class ManagedShapeLatent:
    """The KUBIK_SHAPE_LATENT value: a pipeline.ShapeLatent [B, tokens, channels] and the loaded
    model that decodes it (so Decode can ask ComfyUI to put the model back on its device)."""
    latent: Any
    loaded: comfy_bridge.ManagedModel


@dataclass
class SDFGrid:
    """The KUBIK_SDF_GRID value: signed distances on a regular grid over [-bound, bound]^3.

    values: [R+1, R+1, R+1] float32, axis order x, y, z (Y up), negative inside; exact near the
    surface, interpolated from coarser levels elsewhere when decoded hierarchically.
    """
    values: Any
    bound: float
    level: float


def _progress_reporter():
    """A (done, total) callback driving a ComfyUI progress bar created on the first report."""
    bar = None

    def report(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = comfy_bridge.progress_bar(total)
        bar.update_absolute(done, total)

    return report


def _require_model(model, kind: str | None = None):
    if not isinstance(model, comfy_bridge.ManagedModel):
        raise ValueError("model: connect the output of Kubik Load 3D Model")
    if kind is not None and model.model.kind != kind:
        raise ValueError(f"model: {model.model.name} is a {model.model.kind!r} model (a VAE only); "
                         "reading images needs an 'image-to-shape' model written by "
                         "`kubik 3d train-flow`, such as kubik3d_tiny_demo.safetensors")
    return model


class KubikLoad3DModel:
    DESCRIPTION = ("Loads a KubikAI image-to-3D model (SDF-VAE, image encoder and flow transformer, "
                   "or a VAE only) from ComfyUI's models/kubik3d folder.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("KUBIK_3D_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The 3D model, for Kubik Image to Shape and Kubik Mesh to Shape.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_name": (comfy_bridge.KUBIK3D.names(), {
                "tooltip": "A model file (.safetensors with its .json) in models/kubik3d; the pack "
                           "ships kubik3d_tiny_demo.safetensors."}),
            "device": (DEVICE_CHOICES, {
                "default": "auto",
                "tooltip": "auto: ComfyUI's device, with the model offloaded like a checkpoint "
                           "when memory is needed; cpu: always run on the CPU."}),
        }}

    def load(self, model_name, device):
        from ..kubik_core.recon3d.pipeline import ModelFileError, load_model

        path = comfy_bridge.KUBIK3D.path(model_name)
        if path is None:
            raise ValueError(f"model_name: {model_name!r} is not in the kubik3d model folder; copy a "
                             "model file (.safetensors with its .json) into models/kubik3d and refresh")
        try:
            return (comfy_bridge.load_model_file(
                "kubik3d", path, lambda file, on: load_model(file, on, name=model_name),
                cpu=device == "cpu"),)
        except ModelFileError as exc:
            raise ValueError(f"model_name: {exc}") from None


class KubikImageToShape:
    DESCRIPTION = ("Generates a 3D shape latent from one picture of an object: cuts the object out "
                   "(mask, transparency, or a plain background), centres it as in training, and "
                   "samples the flow model. A batch of images gives one latent per image.")
    CATEGORY = CATEGORY
    FUNCTION = "generate"
    RETURN_TYPES = ("KUBIK_SHAPE_LATENT", "IMAGE")
    RETURN_NAMES = ("latent", "prepared_image")
    OUTPUT_TOOLTIPS = (
        "Shape latents, one per image, for Kubik Decode Shape.",
        "What the model saw: the cut-out object, centred on white (check the cut-out here).",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("KUBIK_3D_MODEL", {"tooltip": "From Kubik Load 3D Model (an image-to-shape model)."}),
                "image": ("IMAGE", {"tooltip": "One object per image, ideally on a plain background."}),
                "invert_mask": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Turn on when the mask comes from Load Image: its MASK is 1 on "
                               "TRANSPARENT pixels (the background). Leave off for masks that "
                               "are 1 on the object (segmentation nodes)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                                 "tooltip": "Noise seed; the same seed and inputs give the same shape."}),
                "steps": ("INT", {"default": 24, "min": 1, "max": 500,
                                  "tooltip": "Flow sampling steps (Heun evaluates the model twice per step)."}),
                "cfg": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 30.0, "step": 0.1,
                                  "tooltip": "Classifier-free guidance scale: higher follows the image "
                                             "more closely; 1 disables guidance."}),
                "sampler": (SAMPLER_CHOICES, {"default": "euler",
                                              "tooltip": "euler: one model call per step; heun: "
                                                         "second order, two calls per step."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Optional object mask, same size as the image. Without "
                                             "it the object is found from the border colour."}),
            },
        }

    def generate(self, model, image, invert_mask, seed, steps, cfg, sampler, mask=None):
        from ..kubik_core.recon3d.image_input import prepare_images
        from ..kubik_core.recon3d.pipeline import image_to_latent

        loaded = _require_model(model, "image-to-shape")
        _check_number("steps", steps, 1, 1000, integer=True)
        _check_number("cfg", cfg, 0.0, 100.0)
        _check_number("seed", seed, 0, 0xFFFFFFFFFFFFFFFF, integer=True)
        if sampler not in SAMPLER_CHOICES:
            raise ValueError(f"sampler: {str(sampler)[:40]!r} is not one of {', '.join(SAMPLER_CHOICES)}")
        if mask is not None and invert_mask:
            mask = 1.0 - mask
        try:
            prepared = prepare_images(image, mask, size=loaded.model.image_size)
        except ValueError as exc:
            raise ValueError(_image_error(str(exc), image, mask)) from None
        network = loaded.ready()
        try:
            latent = image_to_latent(network, prepared.pixels, seed=seed, steps=steps, cfg=cfg,
                                     sampler=sampler, progress=_progress_reporter(),
                                     should_stop=comfy_bridge.check_interrupt)
        except ValueError as exc:  # NaN latents: a diverged model file
            raise ValueError(f"model: {exc}") from None
        return (ManagedShapeLatent(latent, loaded), prepared.pixels.permute(0, 2, 3, 1).contiguous().cpu())


def _check_number(name: str, value, low, high, *, integer: bool = False) -> None:
    """Widgets are range-checked by ComfyUI, but a value linked from another node is not."""
    import math

    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ValueError(f"{name}: must be {'an integer' if integer else 'a finite number'} from {low} to "
                         f"{high}, got {str(value)[:40]}")


def _image_error(message: str, image, mask) -> str:
    """Name the input at fault and the fix for a prepare_images error."""
    if message.startswith("mask"):
        text = f"mask: {message}"
        if "empty" in message:
            text += ("; if it comes from Load Image, its MASK is 1 on transparent pixels: turn on "
                     "invert_mask")
        shape = tuple(getattr(mask, "shape", ()))
        if shape[-2:] == (64, 64) and tuple(getattr(image, "shape", ()))[1:3] != (64, 64):
            text += ("; a 64x64 mask is what Load Image gives for a picture without transparency: "
                     "disconnect the mask")
        return text
    return f"image: {message}"


class KubikDecodeShape:
    DESCRIPTION = ("Decodes shape latents into watertight meshes: the SDF is evaluated on a grid "
                   "(hierarchically: a coarse grid, then only cells near the surface), meshed with "
                   "marching cubes, and the largest piece kept. Meshes are Y up, in [-1, 1]; shapes "
                   "from a picture face the camera (+Z towards the viewer).")
    CATEGORY = CATEGORY
    FUNCTION = "decode"
    RETURN_TYPES = ("MESH", "KUBIK_SDF_GRID")
    RETURN_NAMES = ("mesh", "sdf_grid")
    OUTPUT_IS_LIST = (True, True)
    OUTPUT_TOOLTIPS = (
        "One MESH per latent (a list; meshes differ in size so they are not stacked), for "
        "SaveGLB or Kubik Save Mesh.",
        "The decoded signed-distance grid per latent ((R+1)^3, axes x, y, z, negative inside).",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("KUBIK_SHAPE_LATENT", {"tooltip": "From Kubik Image to Shape or Kubik Mesh to Shape."}),
            "resolution": ("INT", {"default": 128, "min": 16, "max": 1024, "step": 8,
                                   "tooltip": "Grid cells per side: detail and cost grow with it "
                                              "(256 is fine; too large for memory is refused up front)."}),
            "hierarchical": ("BOOLEAN", {"default": True,
                                         "tooltip": "Query only cells near the surface (much faster, "
                                                    "same mesh); off evaluates the dense grid."}),
        }}

    def decode(self, latent, resolution, hierarchical):
        import torch

        from ..kubik_core.recon3d.mesh.extract import DecodeTooLarge, EmptyShapeError, extract_mesh
        from ..kubik_core.recon3d.pipeline import sdf_function

        if not isinstance(latent, ManagedShapeLatent):
            raise ValueError("latent: connect the output of Kubik Image to Shape or Kubik Mesh to Shape")
        _check_number("resolution", resolution, 16, 1024, integer=True)
        network = latent.loaded.ready()
        meshes, grids = [], []
        for index in range(len(latent.latent)):
            try:
                extracted = extract_mesh(sdf_function(latent.latent, index), resolution,
                                         hierarchical=hierarchical, device=network.device,
                                         progress=_progress_reporter(),
                                         should_stop=comfy_bridge.check_interrupt)
            except DecodeTooLarge as exc:
                raise ValueError(f"resolution: {exc}") from None
            except EmptyShapeError as exc:
                raise ValueError(f"latent: shape {index} has no surface ({exc}); try another seed, "
                                 "or check the cut-out in Kubik Image to Shape's prepared_image") from None
            vertices = torch.from_numpy(extracted.vertices).float()[None]
            faces = torch.from_numpy(extracted.faces).long()[None]
            meshes.append(comfy_bridge.make_mesh(vertices, faces))
            grids.append(SDFGrid(extracted.grid.cpu(), bound=1.0, level=0.0))
        return (meshes, grids)


class KubikSaveMesh:
    DESCRIPTION = ("Saves meshes as GLB, OBJ or PLY under ComfyUI's output folder and returns each "
                   "file's output-relative path, to link into Preview 3D's model_file.")
    CATEGORY = CATEGORY
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("model_file",)
    OUTPUT_IS_LIST = (True,)
    OUTPUT_TOOLTIPS = ("Output-relative path of each saved file (e.g. mesh/kubik_00001_.glb), one "
                       "per mesh of the batch; link it into Preview 3D's model_file.",)

    @classmethod
    def INPUT_TYPES(cls):
        from ..kubik_core.recon3d.mesh.export import MESH_FORMATS

        return {"required": {
            "mesh": ("MESH", {"tooltip": "From Kubik Decode Shape (or any node giving a MESH)."}),
            "filename_prefix": ("STRING", {"default": "mesh/kubik",
                                           "tooltip": "Sub-folder and file name start, inside the "
                                                      "output folder (it cannot leave it)."}),
            "format": (list(MESH_FORMATS), {"default": "glb",
                                             "tooltip": "glb (glTF binary, Y up), obj or ply."}),
        }}

    def save(self, mesh, filename_prefix, format):
        import os

        from ..kubik_core.recon3d.mesh.export import MESH_FORMATS, checked_arrays, save_mesh

        vertices, faces = getattr(mesh, "vertices", None), getattr(mesh, "faces", None)
        if not (hasattr(vertices, "ndim") and hasattr(faces, "ndim") and vertices.ndim == 3 and faces.ndim == 3
                and vertices.shape[0] == faces.shape[0]):
            raise ValueError("mesh: expected a MESH with vertices [B,N,3] and faces [B,M,3]")
        if format not in MESH_FORMATS:
            raise ValueError(f"format: {str(format)[:20]!r} is not one of {', '.join(MESH_FORMATS)}")
        if not isinstance(filename_prefix, str) or "\x00" in filename_prefix:
            raise ValueError("filename_prefix: give a folder and file name start such as mesh/kubik")
        arrays = []
        for index in range(vertices.shape[0]):  # every mesh checked before any file or folder is made
            try:
                arrays.append(checked_arrays(vertices[index].detach().cpu().numpy(),
                                             faces[index].detach().cpu().numpy()))
            except ValueError as exc:
                raise ValueError(f"mesh: mesh {index} cannot be saved: {exc}") from None
        try:
            folder, filename, counter, subfolder, _ = comfy_bridge.save_image_path(filename_prefix, 0, 0)
        except Exception as exc:  # ComfyUI raises a bare Exception for paths leaving output/
            raise ValueError(f"filename_prefix: {filename_prefix!r} must stay inside the output "
                             f"folder ({str(exc).strip().splitlines()[0]})") from None
        paths, results = [], []
        for index, (mesh_vertices, mesh_faces) in enumerate(arrays):
            name = f"{filename}_{counter + index:05}_.{format}"
            save_mesh(mesh_vertices, mesh_faces, os.path.join(folder, name), format=format)
            paths.append("/".join(p for p in (subfolder.replace(os.sep, "/"), name) if p))
            results.append({"filename": name, "subfolder": subfolder, "type": "output"})
        return {"ui": {"3d": results}, "result": (paths,)}


class KubikMeshToShape:
    DESCRIPTION = ("Encodes an existing mesh into a shape latent with the model's VAE (the mesh is "
                   "normalised as in training), for round trips and editing.")
    CATEGORY = CATEGORY
    FUNCTION = "encode"
    RETURN_TYPES = ("KUBIK_SHAPE_LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("Shape latents (one per mesh), for Kubik Decode Shape.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("KUBIK_3D_MODEL", {"tooltip": "From Kubik Load 3D Model (any kind: the VAE is used)."}),
                "mesh_file": ("STRING", {"default": "3d/",
                                         "tooltip": "A mesh file (glb, gltf, obj, ply, stl, off) under "
                                                    "ComfyUI's input folder, e.g. 3d/chair.glb, or "
                                                    "Load 3D's mesh_path linked in; ignored when "
                                                    "mesh is connected."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                                 "tooltip": "Seed of the surface points sampled from the mesh."}),
            },
            "optional": {
                "mesh": ("MESH", {"tooltip": "A MESH to encode instead of mesh_file (each mesh of the batch)."}),
            },
        }

    def encode(self, model, mesh_file, seed, mesh=None):
        import torch

        from ..kubik_core.recon3d.errors import MeshError
        from ..kubik_core.recon3d.pipeline import ShapeLatent, mesh_to_latent

        loaded = _require_model(model)
        meshes = _meshes_from_input(mesh) if mesh is not None else [_mesh_from_file(mesh_file)]
        network = loaded.ready()
        latents = []
        for index, (vertices, faces) in enumerate(meshes):
            comfy_bridge.check_interrupt()
            try:
                latents.append(mesh_to_latent(network, vertices, faces, seed=seed).latents)
            except MeshError as exc:
                where = "mesh_file" if mesh is None else f"mesh: mesh {index}"
                raise ValueError(f"{where}: {exc}") from None
        return (ManagedShapeLatent(ShapeLatent(torch.cat(latents), network), loaded),)


def _mesh_from_file(mesh_file: str):
    """(vertices, faces) of a mesh file under the input folder."""
    from ..kubik_core.recon3d.errors import MeshError
    from ..kubik_core.recon3d.mesh.io import load_mesh

    name = mesh_file.strip() if isinstance(mesh_file, str) and "\x00" not in mesh_file else ""
    path = comfy_bridge.input_file_path(name) if name else None
    if path is None:
        raise ValueError(f"mesh_file: {str(mesh_file)[:200]!r} is not a file inside ComfyUI's input folder; "
                         "put the mesh there (e.g. in input/3d) and give its path relative to it, such as "
                         "3d/chair.glb")
    try:
        loaded = load_mesh(path)
    except MeshError as exc:  # named as the user gave it: no server path in the message
        raise ValueError(f"mesh_file: {str(exc).replace(str(path), name)}") from None
    return loaded.vertices, loaded.faces


def _meshes_from_input(mesh) -> list:
    """MESH [B,N,3]/[B,M,3] -> (vertices, faces) numpy pairs, one per batch entry."""
    vertices, faces = getattr(mesh, "vertices", None), getattr(mesh, "faces", None)
    if not (hasattr(vertices, "ndim") and hasattr(faces, "ndim") and vertices.ndim == 3 and faces.ndim == 3
            and vertices.shape[0] == faces.shape[0] > 0):
        raise ValueError("mesh: expected a MESH with vertices [B,N,3] and faces [B,M,3] (one faces entry per "
                         "vertices entry, at least one)")
    return [(v.detach().cpu().double().numpy(), f.detach().cpu().numpy()) for v, f in zip(vertices, faces)]


NODE_CLASS_MAPPINGS = {
    "KubikLoad3DModel": KubikLoad3DModel,
    "KubikImageToShape": KubikImageToShape,
    "KubikDecodeShape": KubikDecodeShape,
    "KubikSaveMesh": KubikSaveMesh,
    "KubikMeshToShape": KubikMeshToShape,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "KubikLoad3DModel": "Kubik Load 3D Model",
    "KubikImageToShape": "Kubik Image to Shape",
    "KubikDecodeShape": "Kubik Decode Shape",
    "KubikSaveMesh": "Kubik Save Mesh",
    "KubikMeshToShape": "Kubik Mesh to Shape",
}
