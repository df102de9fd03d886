"""Write core_nodes.json: the signatures of ComfyUI's core nodes, for the offline workflow check.

Run against a ComfyUI started with ``--disable-all-custom-nodes`` (so only core nodes answer):

    python tests/kubik_testing/dump_core_nodes.py http://127.0.0.1:8188 > tests/kubik_testing/core_nodes.json

Only what the check needs is kept: input types, ranges and choices, input order, output types.
Combos filled from the user's folders (checkpoints, loras, input images...) depend on the
installation, so they are stored as ``"files": true`` and accept any file name.
"""
from __future__ import annotations

import json
import sys
import urllib.request

_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx",
                  ".png", ".jpg", ".jpeg", ".webp", ".yaml", ".json", ".glb", ".obj", ".mp4")
_KEPT_OPTIONS = ("default", "min", "max", "step", "multiline", "control_after_generate",
                 "image_upload", "forceInput")


def _is_file_combo(options: list, extra: dict) -> bool:
    if extra.get("image_upload") or extra.get("video_upload") or extra.get("audio_upload"):
        return True
    return not options or all(isinstance(o, str) and o.lower().endswith(_FILE_SUFFIXES) for o in options)


def _input(spec: list) -> dict:
    kind, extra = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
    out = {k: extra[k] for k in _KEPT_OPTIONS if k in extra}
    if isinstance(kind, list) or kind == "COMBO":
        options = kind if isinstance(kind, list) else extra.get("options", [])
        out["type"] = "COMBO"
        if _is_file_combo(options, extra):
            out["files"] = True
        else:
            out["options"] = options
    else:
        out["type"] = kind
    return out


def signatures(object_info: dict) -> dict:
    result = {}
    for name, info in sorted(object_info.items()):
        if info.get("python_module", "").startswith(("custom_nodes", "comfy_api_nodes")):
            continue
        inputs = {}
        for category in ("required", "optional"):
            for key, spec in (info.get("input", {}).get(category) or {}).items():
                inputs[key] = dict(_input(spec), category=category)
        result[name] = {
            "inputs": inputs,
            "input_order": [k for c in ("required", "optional") for k in info.get("input_order", {}).get(c, [])],
            "outputs": list(info.get("output", [])),  # a list entry is a combo of choices
            "output_node": bool(info.get("output_node")),
        }
    return result


def main(url: str) -> None:
    with urllib.request.urlopen(f"{url.rstrip('/')}/object_info", timeout=60) as resp:
        object_info = json.load(resp)
    nodes = sorted(signatures(object_info).items())
    # One node per line: small diffs when ComfyUI adds or changes a node.
    lines = [f"{json.dumps(name)}: {json.dumps(sig, sort_keys=True)}" for name, sig in nodes]
    sys.stdout.write('{"comfyui_version": "0.8.0", "nodes": {\n' + ",\n".join(lines) + "\n}}\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8188")
