"""KubikAI - ComfyUI custom node pack.

ComfyUI imports this file from ``custom_nodes/<any folder name>/``. Importing it registers the
node classes, the web extension folder and, inside ComfyUI's server, the pack's HTTP routes
(``nodes/routes.py``); it loads no model, opens no connection, and imports nothing of ComfyUI
(that happens lazily in ``nodes/comfy_bridge.py``).
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .nodes.routes import register_routes

register_routes()   # a no-op outside ComfyUI's server

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
