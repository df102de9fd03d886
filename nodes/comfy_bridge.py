"""The one place where the pack touches ComfyUI (comfy.*, folder_paths, server).

Every import of ComfyUI happens inside a function, so the pack imports - and its nodes run -
without ComfyUI (tests, the CLI). Outside ComfyUI each helper falls back to a documented
stand-in: built-in sampler lists, no-op progress bars, plain folders.
"""
from __future__ import annotations

import importlib
import os
from typing import Any

from ..kubik_core.hub import targets as hub_targets
from ..kubik_core.params.samplers import KSAMPLER_SAMPLERS, KSAMPLER_SCHEDULERS

# ComfyUI 0.8.0's KSampler lists (kept in kubik_core), used only when ComfyUI is absent. Inside
# ComfyUI the live lists are used, so node outputs link to KSampler's combos.
FALLBACK_SAMPLERS = list(KSAMPLER_SAMPLERS)
FALLBACK_SCHEDULERS = list(KSAMPLER_SCHEDULERS)


def _optional_import(name: str):
    """Import a ComfyUI module if we run inside ComfyUI, else return None."""
    try:
        return importlib.import_module(name)
    except Exception:  # ImportError, or a ComfyUI module failing outside its server
        return None


def in_comfyui() -> bool:
    return _optional_import("folder_paths") is not None


def _file_in_roots(roots, name: str) -> str | None:
    """The first existing file ``name`` under one of ``roots`` (outside ComfyUI's folder_paths);
    None when missing or when ``name`` escapes its root (``..``, absolute paths, links)."""
    for root in roots:
        root = os.path.realpath(root)
        path = os.path.realpath(os.path.join(root, name))
        if os.path.commonpath([root, path]) == root and os.path.isfile(path):
            return path
    return None


# ---------------------------------------------------------------- samplers
def sampler_names() -> list[str]:
    samplers = _optional_import("comfy.samplers")
    return list(samplers.KSampler.SAMPLERS) if samplers else list(FALLBACK_SAMPLERS)


def scheduler_names() -> list[str]:
    samplers = _optional_import("comfy.samplers")
    return list(samplers.KSampler.SCHEDULERS) if samplers else list(FALLBACK_SCHEDULERS)


# ---------------------------------------------------------------- progress and interrupt
class _NoProgress:
    def __init__(self, total: int):
        self.total = total
        self.current = 0

    def update(self, value: int = 1) -> None:
        self.current += value

    def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
        self.current = value


def progress_bar(total: int):
    """comfy.utils.ProgressBar inside ComfyUI (which also raises on Interrupt), else a no-op."""
    utils = _optional_import("comfy.utils")
    return utils.ProgressBar(total) if utils else _NoProgress(total)


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel; no-op outside ComfyUI."""
    mm = _optional_import("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


# ---------------------------------------------------------------- models
def describe_model(model: Any):
    """Read a ComfyUI MODEL (ModelPatcher) into kubik_core's plain ModelInfo."""
    from ..kubik_core.params.plan import ModelInfo

    inner = getattr(model, "model", None)
    if inner is None:
        raise ValueError("model: expected a ComfyUI MODEL (from a checkpoint loader), got "
                         f"{type(model).__name__}")
    config = getattr(inner, "model_config", None)
    unet_config = getattr(config, "unet_config", None) or {}
    model_type = getattr(inner, "model_type", None)
    return ModelInfo(
        model_class=type(inner).__name__,
        config_class=type(config).__name__ if config is not None else "",
        model_class_mro=[cls.__name__ for cls in type(inner).__mro__],
        model_type=getattr(model_type, "name", str(model_type or "")),
        context_dim=unet_config.get("context_dim"),
        guidance_embed=unet_config.get("guidance_embed"),
    )


# ---------------------------------------------------------------- folders
def output_directory() -> str | None:
    folder_paths = _optional_import("folder_paths")
    return folder_paths.get_output_directory() if folder_paths else None


def user_directory() -> str | None:
    folder_paths = _optional_import("folder_paths")
    return folder_paths.get_user_directory() if folder_paths else None


# ---------------------------------------------------------------- prompting: wildcards
def wildcards_directory() -> str | None:
    """ComfyUI's wildcards folder: ``<models>/wildcards``, else ``<ComfyUI>/wildcards``, the
    first that exists; None outside ComfyUI or when neither exists."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is None:
        return None
    for root in (getattr(folder_paths, "models_dir", None), getattr(folder_paths, "base_path", None)):
        if root and os.path.isdir(os.path.join(root, "wildcards")):
            return os.path.join(root, "wildcards")
    return None


def wildcard_roots() -> list[str]:
    """The folders a typed wildcards_folder may lie in: <models>/wildcards, <ComfyUI>/wildcards
    and ComfyUI's user directory, plus the folders in $KUBIK_WILDCARDS_DIRS (os.pathsep-
    separated; the only roots outside ComfyUI)."""
    roots = []
    folder_paths = _optional_import("folder_paths")
    if folder_paths is not None:
        for base in (getattr(folder_paths, "models_dir", None), getattr(folder_paths, "base_path", None)):
            if base:
                roots.append(os.path.join(base, "wildcards"))
        get_user_directory = getattr(folder_paths, "get_user_directory", None)
        if get_user_directory is not None:
            roots.append(get_user_directory())
    return roots + _env_folders("KUBIK_WILDCARDS_DIRS")

# ---------------------------------------------------------------- classifiers (kubik classify)
CLASSIFIER_EXTENSIONS = {".safetensors"}


# Classifiers that ship with the pack (the digits demo model), listed beside the user's own.
BUNDLED_CLASSIFIERS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                       "models", "classifiers")


def _classifier_fallback_dirs() -> list[str]:
    """Outside ComfyUI, classifiers are listed from $KUBIK_CLASSIFIERS_DIR (CLI, tests), then
    from the pack's own folder."""
    user = os.environ.get("KUBIK_CLASSIFIERS_DIR")
    return ([user] if user else []) + [BUNDLED_CLASSIFIERS_DIR]


def widen_classifier_folder() -> None:
    """Let ComfyUI's core ``classifiers`` model folder list .safetensors files, and the pack's
    bundled classifiers.

    Core registers it with the extension set {""} (extension-less files only); we add ours and
    keep whatever paths core, extra_model_paths.yaml or other packs registered.
    """
    folder_paths = _optional_import("folder_paths")
    if folder_paths is None:
        return
    paths, exts = folder_paths.folder_names_and_paths.get("classifiers", ([], set()))
    if not CLASSIFIER_EXTENSIONS <= set(exts) or BUNDLED_CLASSIFIERS_DIR not in paths:
        paths = list(paths) + ([BUNDLED_CLASSIFIERS_DIR] if BUNDLED_CLASSIFIERS_DIR not in paths else [])
        folder_paths.folder_names_and_paths["classifiers"] = (paths, set(exts) | CLASSIFIER_EXTENSIONS)
        cache = getattr(folder_paths, "filename_list_cache", None)
        if isinstance(cache, dict):
            cache.pop("classifiers", None)


def classifier_names() -> list[str]:
    """Exported classifiers (.safetensors) in ComfyUI's classifiers folder(s)."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is not None:
        widen_classifier_folder()
        names = folder_paths.get_filename_list("classifiers")
    else:
        names = []
        for root in _classifier_fallback_dirs():
            if os.path.isdir(root):
                for parent, _dirs, files in os.walk(root):
                    names += [os.path.relpath(os.path.join(parent, f), root).replace(os.sep, "/")
                              for f in files]
    return sorted({n for n in names if os.path.splitext(n)[1].lower() in CLASSIFIER_EXTENSIONS})


def classifier_path(name: str) -> str | None:
    """Full path of a listed classifier, or None (also for names escaping the folder)."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is not None:
        widen_classifier_folder()
        return folder_paths.get_full_path("classifiers", name)
    return _file_in_roots(_classifier_fallback_dirs(), name)


def classifier_devices():
    """(load device, offload device): ComfyUI's choice inside ComfyUI, else CPU for both."""
    import torch

    mm = _optional_import("comfy.model_management")
    if mm is None:
        return torch.device("cpu"), torch.device("cpu")
    return mm.get_torch_device(), mm.unet_offload_device()


def manage_model(module, load_device, offload_device):
    """Hand an nn.Module to ComfyUI's memory manager (a ModelPatcher); None outside ComfyUI."""
    patcher_module = _optional_import("comfy.model_patcher")
    if patcher_module is None:
        return None
    return patcher_module.ModelPatcher(module, load_device=load_device, offload_device=offload_device)


def load_managed_model(patcher) -> None:
    """Ask ComfyUI to move a managed model onto its load device (offloading others if needed)."""
    mm = _optional_import("comfy.model_management")
    if mm is not None and patcher is not None:
        mm.load_models_gpu([patcher])


# ---------------------------------------------------------------- hub (model downloads)
# ComfyUI 0.8.0's kinds that hold single model files: the node's choices outside ComfyUI, and
# the order the most used ones come first in inside it.
FALLBACK_MODEL_KINDS = list(hub_targets.COMFYUI_MODEL_KINDS)


def model_folder_kinds() -> list[str]:
    """The model folder kinds downloads may go to (loras, checkpoints, ...), common ones first:
    only those model_folder() accepts (never custom_nodes, configs or other code folders)."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is None:
        return list(FALLBACK_MODEL_KINDS)
    live = []
    for kind in list(folder_paths.folder_names_and_paths):
        try:
            model_folder(kind)
        except ValueError:
            continue
        live.append(kind)
    common = [k for k in FALLBACK_MODEL_KINDS if k in live]
    return common + sorted(k for k in live if k not in common)


def model_folder(kind: str) -> tuple[str, tuple[str, ...]] | None:
    """(default folder, allowed download extensions) of a model kind; None outside ComfyUI.

    The default folder is the first of ``folder_paths.get_folder_paths(kind)`` (an
    ``extra_model_paths.yaml`` entry marked ``is_default`` comes first); the extensions are the
    folder's, through kubik_core.hub.targets' allow-list. Raises ValueError for a kind that is
    unknown or not a download target (custom_nodes, configs, a folder inside custom_nodes ...).
    """
    folder_paths = _optional_import("folder_paths")
    if folder_paths is None:
        return None
    if not isinstance(kind, str) or kind not in folder_paths.folder_names_and_paths:
        raise ValueError(f"kind: {str(kind)[:64]!r} is not a ComfyUI model folder; choose one of "
                         f"{', '.join(model_folder_kinds())}")
    entry = folder_paths.folder_names_and_paths.get("custom_nodes")
    code_folders = list(entry[0]) if entry else []
    return hub_targets.model_target(kind, list(folder_paths.get_folder_paths(kind)),
                                    folder_paths.folder_names_and_paths[kind][1], code_folders)


def _prompt_server():
    """ComfyUI's PromptServer instance when the pack runs inside ComfyUI's server, else None.

    Looked up in sys.modules, never imported: ComfyUI's main.py has created the server before
    it loads custom nodes, and outside it nothing named ``server`` must be imported.
    """
    import sys

    server = sys.modules.get("server")
    return getattr(getattr(server, "PromptServer", None), "instance", None)


def server_routes():
    """The aiohttp RouteTableDef of ComfyUI's server (for @routes.get/post), or None."""
    return getattr(_prompt_server(), "routes", None)


def send_event(event: str, data: dict, client_id: str | None = None) -> None:
    """Send a websocket event to one client (or all when client_id is None); no-op outside.

    ``client_id`` must be a string: ComfyUI looks it up in a dict inside its publish loop, where
    an unhashable value (a list from a request body) would end the loop.
    """
    if client_id is not None and not isinstance(client_id, str):
        raise TypeError(f"client_id must be a string, not {type(client_id).__name__}")
    instance = _prompt_server()
    if instance is not None:
        instance.send_sync(event, data, client_id)


def running_prompt_id() -> str | None:
    """The id of the prompt ComfyUI is executing (read while a node runs), or None outside
    ComfyUI's server. ComfyUI's prompt worker sets it before each prompt (main.py)."""
    prompt_id = getattr(_prompt_server(), "last_prompt_id", None)
    return prompt_id if isinstance(prompt_id, str) else None


# ---------------------------------------------------------------- params (sampling-parameter optimizer)
_UNET_CONFIG_KEYS = ("depth", "hidden_size", "image_model", "in_channels")


def describe_model_for_params(model: Any):
    """describe_model() plus the unet_config entries that tell variants of one class apart."""
    info = describe_model(model)
    config = getattr(model.model, "model_config", None)
    unet_config = getattr(config, "unet_config", None) or {}
    extras = {k: unet_config[k] for k in _UNET_CONFIG_KEYS
              if isinstance(unet_config.get(k), (int, float, str, bool))}
    layers = unet_config.get("x_block_self_attn_layers")
    if isinstance(layers, (list, tuple)):
        extras["x_block_self_attn_layers"] = len(layers)
    info.unet_config = extras
    return info


def model_file_path(folder: str, name: str) -> str | None:
    """Full path of a model file in a ComfyUI model folder; None outside ComfyUI or if missing."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is None:
        return None
    try:
        return folder_paths.get_full_path(folder, name)
    except Exception:  # an unknown folder name raises inside folder_paths
        return None


def torch_device_info() -> tuple[str, float] | None:
    """(device name, total memory in GB) of the device ComfyUI samples on; None outside ComfyUI.

    The CPU is reported as ("cpu", 0.0).
    """
    mm = _optional_import("comfy.model_management")
    if mm is None:
        return None
    device = mm.get_torch_device()
    if getattr(device, "type", str(device)) == "cpu":
        return "cpu", 0.0
    import torch

    name = torch.cuda.get_device_name(device) if getattr(device, "type", "") == "cuda" else str(device)
    return name, mm.get_total_memory(device) / 2**30


# ---------------------------------------------------------------- loras and learning (kubik loras, Kubik Save Image)
def _env_folders(variable: str) -> list[str]:
    return [p for p in os.environ.get(variable, "").split(os.pathsep) if p]


def lora_folders() -> list[str]:
    """Every folder ComfyUI has for ``loras`` (incl. extra_model_paths.yaml); outside ComfyUI
    the folders in $KUBIK_LORAS_DIR (os.pathsep-separated)."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is not None:
        return list(folder_paths.get_folder_paths("loras"))
    return _env_folders("KUBIK_LORAS_DIR")


def lora_names() -> list[str]:
    """ComfyUI's lora_name list (what LoraLoader offers); outside ComfyUI, files under lora_folders()."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is not None:
        return list(folder_paths.get_filename_list("loras"))
    names = set()
    for root in lora_folders():
        for parent, _dirs, files in os.walk(root):
            names.update(os.path.relpath(os.path.join(parent, f), root).replace(os.sep, "/")
                         for f in files if f.lower().endswith((".safetensors", ".sft")))
    return sorted(names)


def lora_path(name: str) -> str | None:
    """Full path of a listed LoRA, or None (also for a name escaping its folder)."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is not None:
        return folder_paths.get_full_path("loras", name)
    return _file_in_roots(lora_folders(), name)


def apply_lora(model, clip, path: str, strength_model: float, strength_clip: float):
    """Load a LoRA file the way core LoraLoader does and patch clones of MODEL and CLIP.

    Raises RuntimeError outside ComfyUI: patching needs ComfyUI's model classes.
    """
    utils = _optional_import("comfy.utils")
    sd = _optional_import("comfy.sd")
    if utils is None or sd is None:
        raise RuntimeError("applying LoRAs needs ComfyUI (comfy.sd.load_lora_for_models); "
                           "run this node inside ComfyUI")
    lora = utils.load_torch_file(path, safe_load=True)
    return sd.load_lora_for_models(model, clip, lora, strength_model, strength_clip)


def clip_pooled_embedder(clip):
    """A function texts -> pooled CLIP vectors (lists of floats), or None if the CLIP gives none.

    Uses clip.encode_from_tokens(..., return_pooled=True) as ComfyUI's CLIPTextEncode does.
    """
    if clip is None or not hasattr(clip, "tokenize"):
        return None

    def embed(texts: list[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            _cond, pooled = clip.encode_from_tokens(clip.tokenize(text), return_pooled=True)
            if pooled is None:
                raise ValueError("this CLIP returns no pooled output")
            vectors.append(pooled.reshape(-1).float().cpu().tolist())
        return vectors

    return embed


def kubik_user_directory(create: bool = True) -> str | None:
    """<ComfyUI user directory>/kubik (created unless ``create`` is False), or None outside ComfyUI."""
    folder_paths = _optional_import("folder_paths")
    get_user_directory = getattr(folder_paths, "get_user_directory", None)
    if get_user_directory is None:
        return None
    path = os.path.join(get_user_directory(), "kubik")
    if create:
        os.makedirs(path, exist_ok=True)
    return path


def metadata_disabled() -> bool:
    """True when ComfyUI runs with --disable-metadata (then no workflow goes into PNGs)."""
    cli_args = _optional_import("comfy.cli_args")
    return bool(cli_args is not None and getattr(cli_args.args, "disable_metadata", False))


def save_image_path(filename_prefix: str, width: int, height: int):
    """(folder, filename, counter, subfolder, prefix) as folder_paths.get_save_image_path returns;
    outside ComfyUI, under $KUBIK_OUTPUT_DIR (default ./output) with the same naming."""
    import re

    folder_paths = _optional_import("folder_paths")
    if folder_paths is not None:
        return folder_paths.get_save_image_path(filename_prefix, folder_paths.get_output_directory(),
                                                width, height)
    out = os.path.abspath(os.environ.get("KUBIK_OUTPUT_DIR", "output"))
    subfolder, filename = os.path.split(os.path.normpath(filename_prefix))
    folder = os.path.realpath(os.path.join(out, subfolder))
    if os.path.commonpath([os.path.realpath(out), folder]) != os.path.realpath(out):
        raise ValueError(f"filename_prefix: {filename_prefix!r} leaves the output folder")
    os.makedirs(folder, exist_ok=True)
    pattern = re.compile(re.escape(filename) + r"_(\d+)_")
    counters = [int(m.group(1)) for f in os.listdir(folder) if (m := pattern.match(f))]
    return folder, filename, max(counters, default=0) + 1, subfolder, filename_prefix


# ---- recon3d (image to 3D)
KUBIK3D_FOLDER = "kubik3d"
KUBIK3D_EXTENSIONS = {".safetensors"}

# The demo 3D model ships with the pack, listed beside the user's own models.
BUNDLED_KUBIK3D_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                   "models", KUBIK3D_FOLDER)


def _kubik3d_fallback_dirs() -> list[str]:
    """Outside ComfyUI, 3D models are listed from $KUBIK_3D_MODELS_DIR (CLI, tests), then from
    the pack's own folder."""
    user = os.environ.get("KUBIK_3D_MODELS_DIR")
    return ([user] if user else []) + [BUNDLED_KUBIK3D_DIR]


def register_kubik3d_folder() -> None:
    """Register ComfyUI's ``kubik3d`` model folder: <models>/kubik3d and the pack's bundled
    folder, listing .safetensors files. Paths from extra_model_paths.yaml (applied before packs
    load) are kept."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is None:
        return
    paths, exts = folder_paths.folder_names_and_paths.get(KUBIK3D_FOLDER, ([], set()))
    wanted = [os.path.join(folder_paths.models_dir, KUBIK3D_FOLDER), BUNDLED_KUBIK3D_DIR]
    missing = [p for p in wanted if p not in paths]
    if missing or not KUBIK3D_EXTENSIONS <= set(exts):
        folder_paths.folder_names_and_paths[KUBIK3D_FOLDER] = (list(paths) + missing,
                                                               set(exts) | KUBIK3D_EXTENSIONS)
        cache = getattr(folder_paths, "filename_list_cache", None)
        if isinstance(cache, dict):
            cache.pop(KUBIK3D_FOLDER, None)


def kubik3d_model_names() -> list[str]:
    """3D model files (.safetensors) in ComfyUI's kubik3d folder(s)."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is not None:
        register_kubik3d_folder()
        names = folder_paths.get_filename_list(KUBIK3D_FOLDER)
    else:
        names = []
        for root in _kubik3d_fallback_dirs():
            if os.path.isdir(root):
                for parent, _dirs, files in os.walk(root):
                    names += [os.path.relpath(os.path.join(parent, f), root).replace(os.sep, "/")
                              for f in files]
    return sorted({n for n in names if os.path.splitext(n)[1].lower() in KUBIK3D_EXTENSIONS})


def kubik3d_model_path(name: str) -> str | None:
    """Full path of a listed 3D model, or None (also for names escaping the folder)."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is not None:
        register_kubik3d_folder()
        return folder_paths.get_full_path(KUBIK3D_FOLDER, name)
    return _file_in_roots(_kubik3d_fallback_dirs(), name)


def input_directory() -> str:
    """ComfyUI's input folder; outside ComfyUI $KUBIK_INPUT_DIR (default ./input)."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is not None:
        return folder_paths.get_input_directory()
    return os.path.abspath(os.environ.get("KUBIK_INPUT_DIR", "input"))


def input_file_path(name: str) -> str | None:
    """Full path of a file under the input folder, or None (missing, or escaping the folder)."""
    return _file_in_roots([input_directory()], name)


def make_mesh(vertices, faces):
    """ComfyUI's MESH (comfy_api.latest Types.MESH: ``.vertices`` [B,N,3], ``.faces`` [B,M,3]),
    which core SaveGLB takes; outside ComfyUI a stand-in with the same two attributes."""
    api = _optional_import("comfy_api.latest")
    mesh_class = api.Types.MESH if api is not None else _StandInMesh
    return mesh_class(vertices, faces)


class _StandInMesh:
    """MESH outside ComfyUI: the same attributes as comfy_api's geometry_types.MESH."""

    def __init__(self, vertices, faces):
        self.vertices = vertices
        self.faces = faces


def kubik3d_devices():
    """(load device, offload device) for 3D models: ComfyUI's choice, as for classifiers."""
    return classifier_devices()


def manage_kubik3d_model(model, load_device, offload_device):
    """Hand a Kubik3DModel to ComfyUI's memory manager; None outside ComfyUI.

    ModelPatcher writes its bookkeeping (``device``, ``model_loaded_weight_memory``...) onto the
    module it manages, and Kubik3DModel's ``device`` is a read-only property (read from its
    weights), so the patcher manages a container holding the model; moving the container moves it.
    """
    import torch

    return manage_model(torch.nn.ModuleDict({"kubik3d": model}), load_device, offload_device)
