"""Make the UI-format twin of an API-format workflow, so the two never drift apart.

ComfyUI's editor saves workflows in UI format (nodes with positions, positional widget values,
a link table); its HTTP queue takes API format. The server has no converter, so we keep both
and generate the UI file from the API file:

    python scripts/workflow_ui_from_api.py workflows/api/kubik_txt2img.json workflows/kubik_txt2img.json

Node positions come from a left-to-right layering of the graph; the editor can rearrange them.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from kubik_testing.workflow_check import WIDGET_TYPES, load_signatures  # noqa: E402


def _load_pack():
    spec = importlib.util.spec_from_file_location("kubik_pack", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["kubik_pack"] = module
    spec.loader.exec_module(module)
    return module


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def _layers(api: dict) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(node_id: str) -> int:
        if node_id not in depth:
            sources = [v[0] for v in api[node_id]["inputs"].values() if _is_link(v)]
            depth[node_id] = 1 + max((visit(str(s)) for s in sources), default=-1)
        return depth[node_id]

    for node_id in api:
        visit(node_id)
    return depth


def _widget_default(spec: dict):
    if "default" in spec:
        return spec["default"]
    if spec["type"] == "COMBO":
        return (spec.get("options") or [""])[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[spec["type"]]


def ui_from_api(api: dict, sigs: dict, titles: dict | None = None) -> dict:
    ids = {node_id: i for i, node_id in enumerate(api, start=1)}
    depth = _layers(api)
    row_in_layer: dict[int, int] = {}
    nodes, links = [], []
    out_links: dict[tuple[int, int], list[int]] = {}

    for node_id, node in api.items():
        sig = sigs[node["class_type"]]
        inputs, values = [], []
        for name in sig["input_order"]:
            spec = sig["inputs"][name]
            value = node["inputs"].get(name)
            is_widget = spec["type"] in WIDGET_TYPES and not spec.get("forceInput")
            if is_widget:
                values.append(_widget_default(spec) if _is_link(value) or value is None else value)
                if spec.get("control_after_generate"):
                    values.append("fixed")
                if spec.get("image_upload"):
                    values.append("image")
            if not is_widget or _is_link(value):
                entry = {"name": name, "type": spec["type"], "link": None}
                if is_widget:
                    entry["widget"] = {"name": name}
                if _is_link(value):
                    link_id = len(links) + 1
                    src, slot = ids[str(value[0])], value[1]
                    src_type = sigs[api[str(value[0])]["class_type"]]["outputs"][slot]
                    link_type = "COMBO" if isinstance(src_type, list) else src_type
                    links.append([link_id, src, slot, ids[node_id], len(inputs), link_type])
                    out_links.setdefault((src, slot), []).append(link_id)
                    entry["link"] = link_id
                inputs.append(entry)
        layer = depth[node_id]
        row = row_in_layer.get(layer, 0)
        row_in_layer[layer] = row + 1
        node_ui = {
            "id": ids[node_id], "type": node["class_type"], "pos": [40 + 380 * layer, 40 + 260 * row],
            "size": [340, 60 + 26 * (len(inputs) + len(values))], "flags": {}, "order": 0, "mode": 0,
            "inputs": inputs, "outputs": [], "properties": {"Node name for S&R": node["class_type"]},
            "widgets_values": values,
        }
        title = (titles or {}).get(node_id) or node.get("_meta", {}).get("title")
        if title:
            node_ui["title"] = title
        nodes.append(node_ui)

    for node_ui in nodes:
        sig = sigs[node_ui["type"]]
        for slot, out_type in enumerate(sig["outputs"]):
            node_ui["outputs"].append({
                "name": sig.get("output_names", [None] * len(sig["outputs"]))[slot] or
                        (out_type if isinstance(out_type, str) else "COMBO"),
                "type": "COMBO" if isinstance(out_type, list) else out_type,
                "links": out_links.get((node_ui["id"], slot), []), "slot_index": slot,
            })
    order = sorted(api, key=lambda n: depth[n])
    for position, node_id in enumerate(order):
        nodes[ids[node_id] - 1]["order"] = position
    return {"last_node_id": len(nodes), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4}


def main(api_path: str, ui_path: str) -> None:
    pack = _load_pack()
    sigs = load_signatures(pack.NODE_CLASS_MAPPINGS)
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        sigs[name]["output_names"] = list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES))
    api = json.loads(Path(api_path).read_text())
    Path(ui_path).write_text(json.dumps(ui_from_api(api, sigs), indent=1) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
