"""The one place where the pack touches ComfyUI (comfy.*, folder_paths, server).

Every import of ComfyUI happens inside a function, so the pack imports - and its nodes run -
without ComfyUI (tests, the CLI). Outside ComfyUI each helper falls back to a documented
stand-in: built-in sampler lists, no-op progress bars, plain folders, and a small LRU cache of
loaded models instead of ComfyUI's memory manager. Inside ComfyUI a stand-in is used only when
a ComfyUI module fails to import, and that is logged (a warning naming the module and the error).
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)

from ..kubik_core.hub import targets as hub_targets
from ..kubik_core.params.samplers import KSAMPLER_SAMPLERS, KSAMPLER_SCHEDULERS

# ComfyUI 0.8.0's KSampler lists (kept in kubik_core), used only when ComfyUI is absent. Inside
# ComfyUI the live lists are used, so node outputs link to KSampler's combos.
FALLBACK_SAMPLERS = list(KSAMPLER_SAMPLERS)
FALLBACK_SCHEDULERS = list(KSAMPLER_SCHEDULERS)


def _inside_comfyui() -> bool:
    """True in a ComfyUI process: its main.py imports folder_paths before it loads custom nodes."""
    return "folder_paths" in sys.modules


_IMPORT_FAILURES_LOGGED: set[str] = set()


def _optional_import(name: str):
    """Import a ComfyUI module, or None when it cannot be imported.

    Outside ComfyUI (plain python, tests, the CLI) that is expected and silent. Inside ComfyUI it
    means a stand-in replaces part of ComfyUI, so it is logged once per module, with the error.
    """
    try:
        return importlib.import_module(name)
    except Exception as exc:  # ImportError, or a ComfyUI module failing outside its server
        if _inside_comfyui() and name not in _IMPORT_FAILURES_LOGGED:
            _IMPORT_FAILURES_LOGGED.add(name)
            log.warning("KubikAI: ComfyUI module %s could not be imported (%s: %s); the pack uses "
                        "its stand-in for it", name, type(exc).__name__, " ".join(str(exc).split())[:300])
        return None


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

# ---------------------------------------------------------------- our model folders (classifiers, kubik3d)
# Models that ship with the pack (the digits classifier, the tiny 3D demo): models/<folder>/.
PACK_MODELS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")


@dataclass(frozen=True)
class ModelFolder:
    """A ComfyUI model folder of our own .safetensors models, with the pack's bundled ones beside
    the user's.

    Inside ComfyUI the folder is registered through folder_paths, keeping whatever paths core,
    extra_model_paths.yaml or other packs gave it: <models>/<name> and the pack's models/<name>
    are added, and .safetensors to its extensions (core registers ``classifiers`` for
    extension-less files only; ``kubik3d`` is ours). Outside ComfyUI the files are listed from
    $<env_var> (CLI, tests), then from the pack's folder.
    """
    name: str
    env_var: str
    extensions: frozenset = frozenset({".safetensors"})

    @property
    def bundled_dir(self) -> str:
        return os.path.join(PACK_MODELS_DIR, self.name)

    def _outside_comfyui_dirs(self) -> list[str]:
        user = os.environ.get(self.env_var)
        return ([user] if user else []) + [self.bundled_dir]

    def register(self) -> None:
        """Add our paths and extensions to ComfyUI's folder (no-op outside ComfyUI or when done)."""
        folder_paths = _optional_import("folder_paths")
        if folder_paths is None:
            return
        paths, exts = folder_paths.folder_names_and_paths.get(self.name, ([], set()))
        models_dir = getattr(folder_paths, "models_dir", None)
        wanted = ([os.path.join(models_dir, self.name)] if models_dir else []) + [self.bundled_dir]
        missing = [p for p in wanted if p not in paths]
        if missing or not self.extensions <= set(exts):
            folder_paths.folder_names_and_paths[self.name] = (list(paths) + missing,
                                                              set(exts) | self.extensions)
            cache = getattr(folder_paths, "filename_list_cache", None)
            if isinstance(cache, dict):
                cache.pop(self.name, None)   # the stale listing

    def names(self) -> list[str]:
        """The model files (relative names, as loaders list them) in the folder's paths."""
        folder_paths = _optional_import("folder_paths")
        if folder_paths is not None:
            self.register()
            names = _filename_list(folder_paths, self.name)
        else:
            names = []
            for root in self._outside_comfyui_dirs():
                if os.path.isdir(root):
                    for parent, _dirs, files in os.walk(root):
                        names += [os.path.relpath(os.path.join(parent, f), root).replace(os.sep, "/")
                                  for f in files]
        return sorted({n for n in names if os.path.splitext(n)[1].lower() in self.extensions})

    def path(self, name: str) -> str | None:
        """Full path of a listed model, or None (also for names escaping the folder)."""
        folder_paths = _optional_import("folder_paths")
        if folder_paths is not None:
            self.register()
            return folder_paths.get_full_path(self.name, name)
        return _file_in_roots(self._outside_comfyui_dirs(), name)


CLASSIFIERS = ModelFolder("classifiers", "KUBIK_CLASSIFIERS_DIR")
KUBIK3D = ModelFolder("kubik3d", "KUBIK_3D_MODELS_DIR")


# ---------------------------------------------------------------- our models in memory
@dataclass
class ManagedModel:
    """One of our models loaded for a node: ``model`` (what kubik_core loaded) and, inside
    ComfyUI, the ModelPatcher through which ComfyUI's memory manager moves it (None outside)."""
    model: Any
    patcher: Any = None

    def ready(self):
        """The model on its compute device (inside ComfyUI: loaded, other models offloaded as
        memory requires)."""
        if self.patcher is not None:
            mm = _optional_import("comfy.model_management")
            if mm is not None:
                mm.load_models_gpu([self.patcher])
        return self.model


class ModelCache:
    """A small LRU of loaded models, outside ComfyUI: an unchanged file is read once per device.

    Keyed by (kind, real path, modification time, size, device): a file written again is read
    again. ``capacity`` models at most; the least recently used goes first.
    """

    def __init__(self, capacity: int = 3):
        self.capacity = capacity
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, kind: str, path: str, device, load: Callable[[str, Any], Any]):
        """The model of ``path`` on ``device``, loaded with ``load(path, device)`` when not cached."""
        try:
            stat = os.stat(path)
        except OSError:
            return load(path, device)   # the loader names what is wrong with the file
        key = (kind, os.path.realpath(path), stat.st_mtime_ns, stat.st_size, str(device))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        model = load(path, device)
        with self._lock:
            self._items[key] = model
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return model


MODEL_CACHE = ModelCache()


def load_model_file(kind: str, path: str, load: Callable[[str, Any], Any],
                    module: Callable[[Any], Any] = lambda model: model, *,
                    cpu: bool = False) -> ManagedModel:
    """Load one of our model files for a node, the way ComfyUI keeps its own models.

    Inside ComfyUI (unless ``cpu``): ``load(path, offload device)``, and ``module(model)`` (its
    nn.Module) handed to ComfyUI's memory manager, which moves it onto ComfyUI's device on
    ``ready()`` and offloads it like any checkpoint. Otherwise ``load(path, device)`` through
    MODEL_CACHE (the CPU, or ComfyUI's CPU with ``cpu``).
    """
    import torch

    mm = None if cpu else _optional_import("comfy.model_management")
    patcher_module = None if mm is None else _optional_import("comfy.model_patcher")
    if patcher_module is None:
        return ManagedModel(MODEL_CACHE.get(kind, path, torch.device("cpu"), load))
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    model = load(path, offload_device)
    # ModelPatcher writes its bookkeeping (``device``, ``model_loaded_weight_memory``...) onto
    # the module it manages, and our models may read ``device`` from their weights (a read-only
    # property), so it manages a container holding the module; moving the container moves it.
    container = torch.nn.ModuleDict({kind: module(model)})
    return ManagedModel(model, patcher_module.ModelPatcher(container, load_device=load_device,
                                                           offload_device=offload_device))


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


def embedding_folders() -> list[str]:
    """Every folder ComfyUI has for ``embeddings`` (textual inversion); outside ComfyUI the
    folders in $KUBIK_EMBEDDINGS_DIR (os.pathsep-separated)."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is not None:
        return list(folder_paths.get_folder_paths("embeddings"))
    return _env_folders("KUBIK_EMBEDDINGS_DIR")


def lora_names() -> list[str]:
    """ComfyUI's lora_name list (what LoraLoader offers); outside ComfyUI, files under lora_folders()."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is not None:
        return _filename_list(folder_paths, "loras")
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


def missing_model_folder(kind: str) -> str | None:
    """A sentence naming ComfyUI's default ``kind`` folder when it is gone (deleted, renamed or
    replaced by a file while ComfyUI runs) and how to fix it; None when it is a folder, or
    outside ComfyUI. It names the folder as models/<name>, never the server's absolute path."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is None:
        return None
    try:
        folders = list(folder_paths.get_folder_paths(kind))
    except Exception:  # a ComfyUI without that folder kind
        return None
    if not folders or os.path.isdir(folders[0]):
        return None
    shown = "/".join(os.path.normpath(folders[0]).split(os.sep)[-2:])
    return (f"ComfyUI's {kind} folder {shown} is missing (deleted, renamed or replaced by a file); "
            f"recreate it, put the files back and refresh the editor (R)")


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


# ---------------------------------------------------------------- consistency (image encoders)
def image_encoder_folders() -> list[str]:
    """ComfyUI's clip_vision folders, where a transformers-layout encoder folder (config.json +
    model.safetensors) sits beside ComfyUI's single-file CLIP vision models; outside ComfyUI
    the folders in $KUBIK_IMAGE_ENCODERS_DIR (os.pathsep-separated)."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is not None:
        try:
            return list(folder_paths.get_folder_paths("clip_vision"))
        except Exception:  # a ComfyUI without that folder kind
            return []
    return _env_folders("KUBIK_IMAGE_ENCODERS_DIR")


def _model_folder_names(roots: list[str]) -> list[str]:
    """Transformers-layout model folders (up to two levels below a root) holding config.json and
    model.safetensors, as '/'-separated names relative to their root."""
    names = set()
    for root in roots:
        for parent, dirs, files in os.walk(root):
            depth = os.path.relpath(parent, root).count(os.sep) + (parent != root)
            if depth >= 2:
                dirs[:] = []
            if parent != root and {"config.json", "model.safetensors"} <= set(files):
                names.add(os.path.relpath(parent, root).replace(os.sep, "/"))
    return sorted(names)


def image_encoder_names() -> list[str]:
    """Encoder folders (config.json + model.safetensors) under the clip_vision folders."""
    return _model_folder_names(image_encoder_folders())


def image_encoder_path(name: str) -> str | None:
    """The folder of a listed encoder, or None (also for a name escaping its root)."""
    weights = _file_in_roots(image_encoder_folders(), f"{name}/model.safetensors")
    return os.path.dirname(weights) if weights else None


# ---------------------------------------------------------------- recon3d (image to 3D)
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


# ---------------------------------------------------------------- lora_train (Kubik Train LoRA)
def checkpoint_names() -> list[str]:
    """ComfyUI's checkpoint list (what Load Checkpoint offers); outside ComfyUI the files under
    the folders in $KUBIK_CHECKPOINTS_DIR (os.pathsep-separated)."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is not None:
        return _filename_list(folder_paths, "checkpoints")
    names = set()
    for root in _env_folders("KUBIK_CHECKPOINTS_DIR"):
        for parent, _dirs, files in os.walk(root):
            names.update(os.path.relpath(os.path.join(parent, f), root).replace(os.sep, "/")
                         for f in files if f.lower().endswith((".safetensors", ".sft", ".ckpt")))
    return sorted(names)


def checkpoint_path(name: str) -> str | None:
    """Full path of a listed checkpoint, or None (also for a name escaping its folder)."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is not None:
        return folder_paths.get_full_path("checkpoints", name)
    return _file_in_roots(_env_folders("KUBIK_CHECKPOINTS_DIR"), name)


def training_data_roots() -> list[str]:
    """Folders a training's pictures may come from: ComfyUI's input folder first, then the
    folders its owner lists in $KUBIK_LORA_DATA_DIRS (os.pathsep-separated)."""
    return [input_directory()] + _env_folders("KUBIK_LORA_DATA_DIRS")


def free_memory_for_training() -> None:
    """Unload every model ComfyUI holds and release the device's cached memory, so a training
    process of its own gets the GPU; a no-op outside ComfyUI."""
    mm = _optional_import("comfy.model_management")
    if mm is not None:
        mm.unload_all_models()
        mm.soft_empty_cache(True)


def interrupt_requested() -> bool:
    """True once the user pressed Cancel (ComfyUI's flag stays set until
    check_interrupt() raises); always False outside ComfyUI."""
    mm = _optional_import("comfy.model_management")
    return bool(mm is not None and mm.processing_interrupted())


def training_device() -> str:
    """The device ComfyUI computes on, as a trainer's --device ("cuda:0", "cpu", "mps"); "auto"
    outside ComfyUI or for devices the trainer does not drive (it then picks its own)."""
    mm = _optional_import("comfy.model_management")
    if mm is None:
        return "auto"
    device = mm.get_torch_device()
    kind = getattr(device, "type", "")
    if kind == "cuda":
        return f"cuda:{device.index or 0}"
    return kind if kind in ("cpu", "mps") else "auto"


def clip_tokenizer_folder() -> str | None:
    """ComfyUI's CLIP tokenizer files (comfy/sd1_tokenizer: vocab.json, merges.txt); None
    outside ComfyUI."""
    comfy = _optional_import("comfy")
    folders = list(getattr(comfy, "__path__", []) or [])
    for folder in folders:
        candidate = os.path.join(folder, "sd1_tokenizer")
        if os.path.isfile(os.path.join(candidate, "vocab.json")):
            return candidate
    return None


# Captioning models (BLIP folders in the transformers layout) for Kubik Train LoRA's caption_model.
CAPTIONERS = "kubik_captioners"


def captioner_folders() -> list[str]:
    """The ``kubik_captioners`` model folders: inside ComfyUI registered through folder_paths
    (models/kubik_captioners, plus any path extra_model_paths.yaml gives the name); outside
    ComfyUI the folders in $KUBIK_CAPTIONERS_DIR (os.pathsep-separated)."""
    folder_paths = _optional_import("folder_paths")
    if folder_paths is None:
        return _env_folders("KUBIK_CAPTIONERS_DIR")
    models_dir = getattr(folder_paths, "models_dir", None)
    paths = folder_paths.folder_names_and_paths.get(CAPTIONERS, ([], set()))[0]
    if models_dir and os.path.join(models_dir, CAPTIONERS) not in paths:
        # appended to (not replacing) any paths extra_model_paths.yaml gave the name
        folder_paths.add_model_folder_path(CAPTIONERS, os.path.join(models_dir, CAPTIONERS))
    return list(folder_paths.folder_names_and_paths.get(CAPTIONERS, ([], set()))[0])


def captioner_names() -> list[str]:
    """Captioning model folders (config.json + model.safetensors) under the captioner folders."""
    return _model_folder_names(captioner_folders())


def _filename_list(folder_paths, folder: str) -> list[str]:
    """``folder_paths.get_filename_list(folder)`` that survives a model folder deleted, renamed or
    replaced by a file while ComfyUI runs.

    ComfyUI 0.8.0 checks its cached listing with os.path.getmtime on every folder it listed, which
    raises once one is gone; a node whose INPUT_TYPES raises is dropped from /object_info (it
    vanishes from the editor). The stale listing is dropped and the folders are listed afresh: a
    missing folder lists nothing, and lists its files again once it is back.
    """
    try:
        return list(folder_paths.get_filename_list(folder))
    except OSError:
        forget_file_list(folder)
    try:
        return list(folder_paths.get_filename_list(folder))
    except OSError as exc:
        log.warning("KubikAI: ComfyUI's %s folders cannot be listed (%s); their list stays empty",
                    folder, type(exc).__name__)
        return []


def forget_file_list(folder: str) -> None:
    """Drop ComfyUI's cached listing of a model folder, so a file just written is listed on the
    next request (the cache is checked against folder times, which a coarse clock can miss)."""
    folder_paths = _optional_import("folder_paths")
    cache = getattr(folder_paths, "filename_list_cache", None)
    if isinstance(cache, dict):
        cache.pop(folder, None)
