"""Make the UI-format twin of each API-format workflow, so that the two never drift apart.

ComfyUI's editor opens workflows in UI format (nodes with positions, positional widget values,
a link table); its HTTP queue takes API format. The server has no converter, so we keep both and
generate every ``workflows/<name>.json`` from ``workflows/api/<name>.json``:

    python scripts/workflow_ui_from_api.py            # rewrite the UI files
    python scripts/workflow_ui_from_api.py --check    # exit 1 if one is out of date

Widget values are laid out as the editor builds widgets (tests/kubik_testing/workflow_check.py's
``editor_widgets``: inputs from the node definitions, plus the frontend's "control after
generate", upload and extension widgets), so a template opens with its API twin's values. Seeds
are "fixed" so that each run queues those values. Re-run this after a node's inputs change.

Layout: one column per step of the graph (or the columns listed in COLUMNS), nodes stacked with
room for what they show after a run (explanations, previews, the rating panel), and the view
fitted to a 1600x900 editor.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from kubik_testing.workflow_check import editor_widgets, has_widget, load_signatures  # noqa: E402

WORKFLOWS = REPO / "workflows"

# Node columns per template, left to right, each listed top to bottom (API node ids). A template
# not listed gets one column per step (the longest chain of links before the node).
COLUMNS = {
    "Kubik Text to Image": [["1", "2"], ["3", "4", "5"], ["6", "7"], ["8", "9"], ["10"]],
    "Kubik Auto LoRA": [["1", "2"], ["3", "4"], ["5", "13"], ["6", "7", "8", "9", "10"], ["11", "12"]],
    "Kubik Prompt Plan": [["1"], ["2"], ["3", "4"]],
    "Kubik Classify Image": [["1", "2"], ["3", "4"], ["5", "6"]],
    "Kubik Image to 3D": [["1", "2"], ["3", "7"], ["4"], ["5", "6"], ["8"]],
    "Kubik Variations": [["1", "2"], ["3", "4"], ["5"], ["6", "9"], ["7", "8"], ["10", "11"], ["12"], ["13", "14"]],
}

# LiteGraph's measures in the 1.35 frontend: a socket row, a widget row (20 px + 4 px gap), the
# title bar above a node's position, and the least height of a multiline text box.
SLOT_HEIGHT, WIDGET_HEIGHT, TITLE_HEIGHT, TEXT_BOX_HEIGHT = 20, 24, 30, 54
COLUMN_GAP, ROW_GAP = 60, 50
DEFAULT_WIDTH = 320
# Wider nodes: long prompts, explanations and previews read better; file names show whole.
WIDTHS = {"KubikPromptAnalyzer": 400, "CLIPTextEncode": 360, "KubikExplain": 540, "KubikFeedback": 340,
          "PreviewAny": 440, "Preview3D": 420, "SaveGLB": 360, "PreviewImage": 320,
          "KubikLoadClassifier": 360, "KubikLoad3DModel": 360}
# Height for what a node shows only after a run, beyond its widgets: the text that
# web/kubik_explain.js puts on Explain, Classify Image and Feedback (Explain's detailed text,
# about 25 lines and 40 once wrapped, fills 60 % of its box), image previews (an image drawn
# below a node at its least height covers the node underneath), Kubik Save Image's rating panel
# (web/kubik_rate.js, 190 px + a 4 px gap) above its image, 3D previews, PreviewAny's text.
IMAGE_PREVIEW_HEIGHT = 300
SHOWN_AFTER_RUN = {"KubikExplain": 500, "KubikClassifyImage": 60, "KubikFeedback": 110,
                   "KubikSaveImage": 194 + IMAGE_PREVIEW_HEIGHT, "PreviewImage": IMAGE_PREVIEW_HEIGHT,
                   "SaveImage": IMAGE_PREVIEW_HEIGHT, "PreviewAny": 60,
                   "Preview3D": 340, "SaveGLB": 300}
# Multiline text boxes that get more than the least height, for the prompt to be read whole.
TEXT_BOX_HEIGHTS = {("KubikPromptAnalyzer", "prompt"): 110}
# The part of a 1600x900 editor window that the sidebar, tabs and menus leave free.
VIEW_LEFT, VIEW_TOP, VIEW_WIDTH, VIEW_HEIGHT = 70, 90, 1500, 780


def _load_pack():
    spec = importlib.util.spec_from_file_location("kubik_pack", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["kubik_pack"] = module
    spec.loader.exec_module(module)
    return module


def pack_signatures() -> dict:
    """Core node signatures plus the pack's, with the pack's output names."""
    pack = _load_pack()
    sigs = load_signatures(pack.NODE_CLASS_MAPPINGS)
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        sigs[name]["output_names"] = list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES))
    return sigs


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def _steps(api: dict) -> dict[str, int]:
    """Each node's step: 0 for nodes without linked inputs, else one more than its latest source."""
    step: dict[str, int] = {}

    def visit(node_id: str) -> int:
        if node_id not in step:
            sources = [str(v[0]) for v in api[node_id]["inputs"].values() if _is_link(v)]
            step[node_id] = 1 + max((visit(s) for s in sources), default=-1)
        return step[node_id]

    for node_id in api:
        visit(node_id)
    return step


def _columns(api: dict, name: str) -> list[list[str]]:
    listed = COLUMNS.get(name)
    if listed:
        flat = [node_id for column in listed for node_id in column]
        if sorted(flat) != sorted(api):
            raise ValueError(f"COLUMNS[{name!r}] lists {sorted(flat)}, the API file has {sorted(api)}")
        return listed
    step = _steps(api)
    return [[n for n in api if step[n] == s] for s in range(max(step.values()) + 1)]


def _node_size(class_type: str, sig: dict, sockets: int) -> list[int]:
    """A size at least as large as the editor computes, plus room for what a run shows."""
    rows = max(sockets, len(sig["outputs"]))
    height = 6 + SLOT_HEIGHT * rows
    widgets = editor_widgets(class_type, sig)
    for widget in widgets:
        multiline = widget.kind == "input" and widget.spec.get("multiline")
        height += TEXT_BOX_HEIGHTS.get((class_type, widget.name), TEXT_BOX_HEIGHT) if multiline else WIDGET_HEIGHT
    if widgets:
        height += 8
    if class_type == "PreviewAny":  # its two display-only text boxes
        height += 2 * TEXT_BOX_HEIGHT
    height += SHOWN_AFTER_RUN.get(class_type, 0)
    return [WIDTHS.get(class_type, DEFAULT_WIDTH), height]


def ui_from_api(api: dict, sigs: dict, name: str = "") -> dict:
    """The UI-format workflow for ``api``: same node ids, links, values and titles."""
    ids = {node_id: int(node_id) for node_id in api}
    links, link_ids = [], {}
    nodes = {}
    for node_id, node in api.items():
        cls = node["class_type"]
        sig = sigs[cls]
        values = node["inputs"]
        sockets, widget_inputs = [], []
        for input_name in sig["input_order"]:
            spec = sig["inputs"][input_name]
            entry = {"name": input_name, "type": spec["type"], "link": None}
            if has_widget(spec):
                entry["widget"] = {"name": input_name}
                widget_inputs.append(entry)
            else:
                if spec["category"] == "optional":
                    entry["shape"] = 7  # the editor's hollow socket for optional inputs
                sockets.append(entry)
        inputs = sockets + widget_inputs
        widgets_values = []
        for widget in editor_widgets(cls, sig):
            if widget.kind == "input":
                value = values.get(widget.name)
                widgets_values.append(widget.default if value is None or _is_link(value) else value)
            else:
                widgets_values.append("fixed" if widget.kind == "control" else widget.default)
                if widget.kind in ("upload", "extension") and widget.spec["type"]:
                    inputs.append({"name": widget.name, "type": widget.spec["type"],
                                   "widget": {"name": widget.name}, "link": None})
        for slot, entry in enumerate(inputs):
            value = values.get(entry["name"])
            if _is_link(value):
                source = str(value[0])
                out_type = sigs[api[source]["class_type"]]["outputs"][value[1]]
                link_id = len(links) + 1
                links.append([link_id, ids[source], value[1], ids[node_id], slot,
                              "COMBO" if isinstance(out_type, list) else out_type])
                link_ids.setdefault((ids[source], value[1]), []).append(link_id)
                entry["link"] = link_id
        ui_node = {"id": ids[node_id], "type": cls, "pos": [0, 0], "size": _node_size(cls, sig, len(sockets)),
                   "flags": {}, "order": 0, "mode": 0, "inputs": inputs, "outputs": [],
                   "properties": {"Node name for S&R": cls}, "widgets_values": widgets_values}
        title = node.get("_meta", {}).get("title")
        if title:
            ui_node["title"] = title
        nodes[node_id] = ui_node

    for node_id, ui_node in nodes.items():
        sig = sigs[ui_node["type"]]
        names = sig.get("output_names") or [None] * len(sig["outputs"])
        for slot, out_type in enumerate(sig["outputs"]):
            kind = "COMBO" if isinstance(out_type, list) else out_type
            ui_node["outputs"].append({"name": names[slot] or kind, "type": kind,
                                       "links": link_ids.get((ui_node["id"], slot), []), "slot_index": slot})

    step = _steps(api)
    for order, node_id in enumerate(sorted(api, key=lambda n: (step[n], ids[n]))):
        nodes[node_id]["order"] = order

    x = 0
    for column in _columns(api, name):
        y = TITLE_HEIGHT
        for node_id in column:
            nodes[node_id]["pos"] = [x, y]
            y += nodes[node_id]["size"][1] + TITLE_HEIGHT + ROW_GAP
        x += max(nodes[n]["size"][0] for n in column) + COLUMN_GAP
    width = x - COLUMN_GAP
    height = max(n["pos"][1] + n["size"][1] for n in nodes.values())
    # Below about 0.57 the editor draws nodes without text; the view then starts at the left.
    scale = max(0.6, min(1.0, math.floor(20 * min(VIEW_WIDTH / width, VIEW_HEIGHT / height)) / 20))
    offset = [round(VIEW_LEFT / scale, 1), round(VIEW_TOP / scale, 1)]

    return {"last_node_id": max(ids.values()), "last_link_id": len(links),
            "nodes": [nodes[n] for n in sorted(nodes, key=int)], "links": links, "groups": [], "config": {},
            "extra": {"ds": {"scale": scale, "offset": offset}}, "version": 0.4}


def render(api_path: Path, sigs: dict) -> str:
    api = json.loads(api_path.read_text())
    return json.dumps(ui_from_api(api, sigs, api_path.stem), indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report UI files that are out of date")
    args = parser.parse_args(argv)
    sigs = pack_signatures()
    stale = []
    for api_path in sorted((WORKFLOWS / "api").glob("*.json")):
        ui_path = WORKFLOWS / api_path.name
        text = render(api_path, sigs)
        if ui_path.exists() and ui_path.read_text() == text:
            continue
        stale.append(ui_path.name)
        if not args.check:
            ui_path.write_text(text)
    if args.check and stale:
        print(f"out of date (run scripts/workflow_ui_from_api.py): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
