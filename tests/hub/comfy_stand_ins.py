"""Stand-ins for ComfyUI's ``folder_paths`` and ``server`` modules (outside the project).

The pack's hub node and routes reach ComfyUI only through ``nodes/comfy_bridge.py``, which looks
these modules up in ``sys.modules``; tests put these small modules there, shaped like ComfyUI
0.8.0's. The server stand-in publishes events the way ComfyUI's publish loop does (``sid in
sockets``), so a client id ComfyUI could not handle fails here as it would there.
"""
from __future__ import annotations

import types
from pathlib import Path

# folder_paths.supported_pt_extensions of ComfyUI 0.8.0
PT_EXTENSIONS = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}


def folder_paths_module(root: Path) -> types.ModuleType:
    """folder_paths with model folders under ``root/models`` and ComfyUI's non-model folders."""
    models = root / "models"
    module = types.ModuleType("folder_paths")
    module.models_dir = str(models)
    module.folder_names_and_paths = {
        "checkpoints": ([str(models / "checkpoints")], set(PT_EXTENSIONS)),
        "configs": ([str(models / "configs")], [".yaml"]),
        "loras": ([str(models / "loras"), str(root / "extra_loras")], set(PT_EXTENSIONS)),
        "diffusers": ([str(models / "diffusers")], ["folder"]),
        "custom_nodes": ([str(root / "custom_nodes")], set()),
        "classifiers": ([str(models / "classifiers")], {""}),
        "kubik3d": ([str(models / "kubik3d")], {".safetensors"}),
    }
    module.get_folder_paths = lambda name: list(module.folder_names_and_paths[name][0])
    return module


class PromptServerStandIn:
    """PromptServer.instance: a route table, and send_sync publishing like ComfyUI's loop."""

    def __init__(self):
        from aiohttp import web

        self.routes = web.RouteTableDef()
        self.sockets: dict[str, object] = {"c1": object()}
        self.events: list[tuple[str, dict, str | None]] = []
        self.publish_errors: list[BaseException] = []

    def send_sync(self, event, data, sid=None):
        try:
            if sid is not None:
                sid in self.sockets   # noqa: B015 - what ComfyUI's send_json does with sid
        except TypeError as exc:      # inside ComfyUI this ends the publish loop
            self.publish_errors.append(exc)
            return
        self.events.append((event, data, sid))


def server_module(instance: PromptServerStandIn) -> types.ModuleType:
    module = types.ModuleType("server")
    module.PromptServer = type("PromptServer", (), {"instance": instance})
    return module


def app_for(instance: PromptServerStandIn):
    """An aiohttp application serving the routes registered on ``instance``."""
    from aiohttp import web

    app = web.Application()
    app.add_routes(instance.routes)
    return app
