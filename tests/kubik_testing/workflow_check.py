"""Offline checks for ComfyUI workflow files, in UI format and in API format.

A workflow passes when every node type exists (ours, or a core node listed in core_nodes.json),
every link joins type-compatible sockets, and every widget value is of its input's type and
inside its declared range or choices. ``check_workflow_file`` returns a list of problems, each
naming the file, node and input, so a failing test says what to fix.
"""
from __future__ import annotations

import json
from pathlib import Path

from .dump_core_nodes import signatures

HERE = Path(__file__).resolve().parent
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SEED_CONTROLS = {"fixed", "increment", "decrement", "randomize"}


def load_signatures(node_classes: dict) -> dict:
    """Core signatures from core_nodes.json plus ours, read from the node classes themselves."""
    core = json.loads((HERE / "core_nodes.json").read_text())["nodes"]
    ours = {}
    for name, cls in node_classes.items():
        types = cls.INPUT_TYPES()
        ours[name] = {
            "input": types,
            "input_order": {c: list(types.get(c, {})) for c in ("required", "optional")},
            "output": list(cls.RETURN_TYPES),
            "output_node": getattr(cls, "OUTPUT_NODE", False),
            "python_module": "kubik",
        }
    clash = set(core) & set(ours)
    if clash:
        raise ValueError(f"our node ids shadow core nodes: {sorted(clash)}")
    return {**core, **signatures(ours)}


def _types(t) -> set:
    return {p.strip() for p in t.split(",")} if isinstance(t, str) else set()


def compatible(output_type, input_spec: dict) -> bool:
    """Whether an output of ``output_type`` may feed an input declared as ``input_spec``."""
    input_type = input_spec["type"]
    if isinstance(output_type, list):  # a combo output: its choices must all be valid there
        return input_type == "COMBO" and (input_spec.get("files") or set(output_type) <= set(input_spec.get("options", [])))
    if output_type == "*" or input_type == "*":
        return True
    return bool(_types(output_type) & _types(input_type))


def check_value(value, spec: dict) -> str | None:
    """None if ``value`` is valid for the widget ``spec``, else what is wrong."""
    kind = spec["type"]
    if kind == "COMBO":
        if spec.get("files"):
            return None if isinstance(value, str) else f"{value!r} is not a file name"
        return None if value in spec.get("options", []) else f"{value!r} is not one of {spec.get('options')}"
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{value!r} is not a boolean"
    if kind == "STRING":
        return None if isinstance(value, str) else f"{value!r} is not a string"
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{value!r} is not a number"
        if kind == "INT" and value != int(value):
            return f"{value!r} is not an integer"
        if "min" in spec and value < spec["min"]:
            return f"{value!r} is below the minimum {spec['min']}"
        if "max" in spec and value > spec["max"]:
            return f"{value!r} is above the maximum {spec['max']}"
        return None
    return f"a {kind} input cannot hold a widget value"


def check_api(workflow: dict, sigs: dict) -> list[str]:
    problems = []
    for node_id, node in workflow.items():
        cls = node.get("class_type")
        where = f"node {node_id} ({cls})"
        if cls not in sigs:
            problems.append(f"{where}: unknown node type")
            continue
        sig = sigs[cls]
        inputs = node.get("inputs", {})
        for name, spec in sig["inputs"].items():
            if name not in inputs and spec["category"] == "required":
                problems.append(f"{where}: required input {name!r} is missing")
        for name, value in inputs.items():
            spec = sig["inputs"].get(name)
            if spec is None:
                problems.append(f"{where}: no input named {name!r}")
            elif isinstance(value, list):  # a link [source id, output index]
                source = workflow.get(str(value[0]))
                if source is None or source.get("class_type") not in sigs:
                    problems.append(f"{where}: input {name!r} links to a missing node {value[0]!r}")
                    continue
                outputs = sigs[source["class_type"]]["outputs"]
                if not 0 <= value[1] < len(outputs):
                    problems.append(f"{where}: input {name!r} links to output {value[1]} of a node with {len(outputs)}")
                elif not compatible(outputs[value[1]], spec):
                    problems.append(f"{where}: input {name!r} ({spec['type']}) linked to {outputs[value[1]]!r}")
            else:
                error = check_value(value, spec)
                if error:
                    problems.append(f"{where}: input {name!r}: {error}")
    return problems


def _widget_inputs(sig: dict) -> list[tuple[str, dict]]:
    return [(name, sig["inputs"][name]) for name in sig["input_order"]
            if sig["inputs"][name]["type"] in WIDGET_TYPES and not sig["inputs"][name].get("forceInput")]


def check_ui(workflow: dict, sigs: dict) -> list[str]:
    problems = []
    nodes = {node["id"]: node for node in workflow.get("nodes", [])}
    for node in nodes.values():
        cls = node.get("type")
        where = f"node {node['id']} ({cls})"
        if cls not in sigs:
            problems.append(f"{where}: unknown node type")
            continue
        values = list(node.get("widgets_values") or [])
        for name, spec in _widget_inputs(sigs[cls]):
            if not values:
                problems.append(f"{where}: no widget value for {name!r}")
                break
            error = check_value(values.pop(0), spec)
            if error:
                problems.append(f"{where}: widget {name!r}: {error}")
            if spec["type"] == "INT" and values and values[0] in SEED_CONTROLS:
                values.pop(0)  # the frontend's "control after generate" value
            if spec.get("image_upload") and values and values[0] == "image":
                values.pop(0)  # LoadImage's upload button keeps a value too
        if values:
            problems.append(f"{where}: {len(values)} widget values left over: {values!r}")
    for link in workflow.get("links", []):
        link_id, src, src_slot, dst, dst_slot, link_type = link[:6]
        if src not in nodes or dst not in nodes:
            problems.append(f"link {link_id}: joins missing nodes {src} -> {dst}")
            continue
        src_cls, dst_cls = nodes[src]["type"], nodes[dst]["type"]
        if src_cls not in sigs or dst_cls not in sigs:
            continue  # already reported
        outputs = sigs[src_cls]["outputs"]
        if not 0 <= src_slot < len(outputs):
            problems.append(f"link {link_id}: {src_cls} has no output {src_slot}")
            continue
        dst_inputs = nodes[dst].get("inputs", [])
        if not 0 <= dst_slot < len(dst_inputs):
            problems.append(f"link {link_id}: {dst_cls} has no input slot {dst_slot}")
            continue
        name = dst_inputs[dst_slot]["name"]
        spec = sigs[dst_cls]["inputs"].get(name)
        if spec is None:
            problems.append(f"link {link_id}: {dst_cls} has no input {name!r}")
        elif not compatible(outputs[src_slot], spec):
            problems.append(f"link {link_id}: {src_cls}[{src_slot}] -> {dst_cls}.{name} ({spec['type']}) "
                            f"joins incompatible types")
        if dst_inputs[dst_slot].get("link") != link_id:
            problems.append(f"link {link_id}: {dst_cls}.{name} does not point back to this link")
    return problems


def is_api_format(data: dict) -> bool:
    return "nodes" not in data and all(isinstance(v, dict) and "class_type" in v for v in data.values())


def check_workflow_file(path: Path, sigs: dict) -> list[str]:
    data = json.loads(Path(path).read_text())
    problems = check_api(data, sigs) if is_api_format(data) else check_ui(data, sigs)
    return [f"{Path(path).name}: {p}" for p in problems]


def ui_api_mismatch(ui: dict, api: dict) -> list[str]:
    """Differences between a UI workflow and its API twin: node types and link count."""
    ui_types = sorted(n["type"] for n in ui["nodes"] if n.get("mode", 0) != 4)
    api_types = sorted(n["class_type"] for n in api.values())
    problems = []
    if ui_types != api_types:
        problems.append(f"node types differ: UI {ui_types} vs API {api_types}")
    api_links = sum(isinstance(v, list) for n in api.values() for v in n["inputs"].values())
    if len(ui.get("links", [])) != api_links:
        problems.append(f"link count differs: UI {len(ui.get('links', []))} vs API {api_links}")
    return problems
