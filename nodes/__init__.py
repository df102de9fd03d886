"""ComfyUI node classes, one module per capability.

Each module defines its own ``NODE_CLASS_MAPPINGS`` and ``NODE_DISPLAY_NAME_MAPPINGS``;
this file merges them. To add a capability, write ``nodes/<cap>.py`` and list it below.
"""
from importlib import import_module

NODE_MODULES = (
    "prompting",
    "params",
    "explain",
    "classify",
    "hub",
    "loras",
    "characters",
    "learning",
    "recon3d",
    "variations",
    "examples",
    "consistency",
    "lora_train",
)

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}

for _name in NODE_MODULES:
    _module = import_module(f".{_name}", __name__)
    for _node_id in _module.NODE_CLASS_MAPPINGS:
        if _node_id in NODE_CLASS_MAPPINGS:
            raise RuntimeError(f"node id {_node_id!r} is defined twice (second time in nodes/{_name}.py)")
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)
