"""Offline checks for ComfyUI workflow files, in UI format and in API format.

A workflow passes when every node type exists (ours, or a core node listed in core_nodes.json),
every link joins type-compatible sockets, and every widget value is of its input's type and
inside its declared range or choices. ``check_workflow_file`` returns a list of problems, each
naming the file, node and input, so a failing test says what to fix.

UI files hold widget values by position, so a check must know which widgets the editor builds for
a node, in which order. ``editor_widgets`` answers that the way ComfyUI's frontend
(comfyui-frontend-package 1.35.9, the one ComfyUI 0.8.0 installs) does; see its docstring.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dump_core_nodes import signatures

HERE = Path(__file__).resolve().parent
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SEED_CONTROLS = {"fixed", "increment", "decrement", "randomize"}
COMBO_CONTROLS = SEED_CONTROLS | {"increment-wrap"}
# INT inputs with these names get a "control after generate" widget unless they say otherwise.
SEED_NAMES = ("seed", "noise_seed")
MEDIA_UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")
# Widgets that the frontend's own extensions add to particular core nodes, after the node's inputs:
# (widget name, the value a new node has, the input type when the widget comes with an input).
# ComfyUI_frontend src/extensions/core: Comfy.Preview3D and Comfy.SaveGLB add a required "image"
# PREVIEW_3D input, a 3D viewer that keeps a value; Comfy.PreviewAny adds two display-only
# previews and a "previewMode" toggle, of which only the toggle keeps a value.
EXTENSION_WIDGETS = {
    "Preview3D": (("image", "", "PREVIEW_3D"),),
    "SaveGLB": (("image", "", "PREVIEW_3D"),),
    "PreviewAny": (("previewMode", False, None),),
}
# Core nodes whose frontend extensions build widgets beyond these rules (3D loader buttons, webcam,
# dynamic combos, auto-refresh, video upload); a UI file using them is reported, not guessed at.
# With ComfyUI 0.8.0 and frontend 1.35.9, editor_widgets matches the editor's value-keeping
# widgets for all other 436 node types, the pack's included (checked in a headless Chromium).
UNMODELLED = {"Load3D", "LoadImageOutput", "LoadVideo", "WebcamCapture", "CustomCombo", "ResizeImageMaskNode"}


@dataclass(frozen=True)
class EditorWidget:
    """One value-keeping widget as the editor builds it for a node, in widgets_values order.

    ``kind`` is "input" (edits the input ``name``; ``spec`` is its declaration), "control"
    (control after generate for the widget before it, whose declaration ``spec`` is), "filter"
    (a combo's control filter list), "upload" (the upload button of a media combo) or
    "extension" (added by a frontend extension). For the last two ``spec`` holds the type of the
    input the editor adds with the widget (None when it adds none). ``default`` is the value a
    node fresh from the node menu starts with.
    """
    name: str
    kind: str
    default: Any
    spec: dict | None = None


def _input_default(spec: dict):
    if "default" in spec:
        return spec["default"]
    if spec["type"] == "COMBO":
        return (spec.get("options") or [""])[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[spec["type"]]


def has_widget(spec: dict) -> bool:
    """Whether the editor gives this input a widget (forceInput ones are sockets only)."""
    return spec["type"] in WIDGET_TYPES and not spec.get("forceInput")


def editor_widgets(class_type: str, sig: dict) -> list[EditorWidget]:
    """The value-keeping widgets the frontend builds for a node of ``class_type``, in order.

    The rules, read in comfyui-frontend-package 1.35.9 (ComfyUI_frontend's useIntWidget,
    useFloatWidget, useComboWidget, addValueControlWidgets, Comfy.UploadImage, getOrderedInputSpecs
    and LGraphNode.configure):
    - inputs in ``input_order``, required then optional; an INT, FLOAT, STRING, BOOLEAN or combo
      input gets a widget unless it declares forceInput; a linked input keeps its widget and value;
    - after an INT widget, a "control after generate" widget when the input declares
      ``control_after_generate`` true, or, when it does not declare it, is named seed or
      noise_seed; a new node starts it on "randomize";
    - after a FLOAT widget that declares control_after_generate, a control starting on "fixed";
    - after a combo that declares control_after_generate, a control ("randomize") and a
      control filter list ("");
    - after all inputs, an upload button (value "image") when a required combo declares
      image_upload, video_upload or animated_image_upload; then the extension widgets of
      EXTENSION_WIDGETS;
    - widgets marked serialize=false (display-only previews) keep no value and are left out:
      loading fills the value-keeping widgets in order from widgets_values.
    """
    widgets: list[EditorWidget] = []
    for name in sig["input_order"]:
        spec = sig["inputs"][name]
        if not has_widget(spec):
            continue
        widgets.append(EditorWidget(name, "input", _input_default(spec), spec))
        declared = spec.get("control_after_generate")
        if spec["type"] == "INT" and (declared if declared is not None else name in SEED_NAMES):
            widgets.append(EditorWidget("control_after_generate", "control", "randomize", spec))
        elif spec["type"] == "FLOAT" and declared:
            widgets.append(EditorWidget("control_after_generate", "control", "fixed", spec))
        elif spec["type"] == "COMBO" and declared:
            widgets.append(EditorWidget("control_after_generate", "control", "randomize", spec))
            widgets.append(EditorWidget("control_filter_list", "filter", ""))
    if any(sig["inputs"][n]["category"] == "required" and sig["inputs"][n]["type"] == "COMBO"
           and any(sig["inputs"][n].get(flag) for flag in MEDIA_UPLOAD_FLAGS) for n in sig["input_order"]):
        widgets.append(EditorWidget("upload", "upload", "image", {"type": "IMAGEUPLOAD"}))
    widgets += [EditorWidget(name, "extension", default, {"type": input_type})
                for name, default, input_type in EXTENSION_WIDGETS.get(class_type, ())]
    return widgets


def _legacy_migration_drops(sig: dict, widgets: list[EditorWidget], values: list) -> list[int]:
    """Positions of ``values`` that the editor would drop as a pre-1.16 file's forceInput values.

    The frontend (migrateWidgetsValues) treats widgets_values as legacy when their count equals
    one per widget input or forceInput input (two for a seed-like one) and a forceInput input is
    among them; it then removes the values at the forceInput inputs' positions.
    """
    names = {w.name for w in widgets}
    legacy = [(n, sig["inputs"][n]) for n in sig["input_order"]
              if n in names or sig["inputs"][n].get("forceInput")]
    legacy += [(w.name, {}) for w in widgets if w.kind == "upload" or (w.kind == "extension" and w.spec["type"])]
    count = sum(2 if s.get("control_after_generate") or n in SEED_NAMES else 1 for n, s in legacy)
    if count != len(values):
        return []
    return [i for i, (_, s) in enumerate(legacy) if s.get("forceInput")]


def object_info_signatures(object_info: dict) -> dict:
    """Signatures of every node a running ComfyUI lists at /object_info, custom nodes included."""
    # signatures() leaves out custom nodes (core_nodes.json is for core only): unmark them.
    return signatures({name: {**info, "python_module": ""} for name, info in object_info.items()})


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


def check_widget_values(class_type: str, sig: dict, values: list) -> list[str]:
    """What is wrong with a UI node's widgets_values, as the editor would load them."""
    if class_type in UNMODELLED:
        return [f"the editor's widgets for {class_type} are not modelled here; use another node"]
    widgets = editor_widgets(class_type, sig)
    problems = []
    if len(values) != len(widgets):
        problems.append(f"{len(values)} widget values for {len(widgets)} widgets "
                        f"{[w.name for w in widgets]}: {values!r}")
    for widget, value in zip(widgets, values):
        if widget.kind == "input":
            error = check_value(value, widget.spec)
        elif widget.kind == "control":
            choices = COMBO_CONTROLS if widget.spec["type"] == "COMBO" else SEED_CONTROLS
            error = None if value in choices else f"{value!r} is not one of {sorted(choices)}"
        else:
            error = None if type(value) is type(widget.default) else \
                f"{value!r} is not a {type(widget.default).__name__}"
        if error:
            problems.append(f"widget {widget.name!r}: {error}")
    dropped = _legacy_migration_drops(sig, widgets, values)
    if dropped:
        problems.append(f"the editor would read these values as an old file's and drop positions {dropped}")
    return problems


def check_ui(workflow: dict, sigs: dict) -> list[str]:
    problems = []
    nodes = {node["id"]: node for node in workflow.get("nodes", [])}
    for node in nodes.values():
        cls = node.get("type")
        where = f"node {node['id']} ({cls})"
        if cls not in sigs:
            problems.append(f"{where}: unknown node type")
            continue
        values = node.get("widgets_values")
        if not isinstance(values, list):
            values = [] if values is None else [values]
        problems += [f"{where}: {p}" for p in check_widget_values(cls, sigs[cls], values)]
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


def _same_value(a, b) -> bool:
    """Equal as JSON values: 10 and 10.0 are, True and 1 are not."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _ui_links(ui: dict) -> dict[tuple[int, str], tuple[int, int]]:
    """(target node id, input name) -> (source node id, output slot) for every UI link."""
    nodes = {node["id"]: node for node in ui.get("nodes", [])}
    joined = {}
    for link_id, src, src_slot, dst, dst_slot, *_ in ui.get("links", []):
        inputs = nodes.get(dst, {}).get("inputs") or []
        if 0 <= dst_slot < len(inputs):
            joined[(dst, inputs[dst_slot]["name"])] = (src, src_slot)
    return joined


def ui_api_mismatch(ui: dict, api: dict, sigs: dict) -> list[str]:
    """Where a UI workflow would queue something other than its API twin (same node ids).

    Every node has the same type; every input that the API file links is linked in the UI file
    from the same node and output; every literal API value is the value of that input's widget as
    the editor loads it (positions from ``editor_widgets``), and every widget has an API value
    (a new optional input too); seeds are "fixed", so that the template queues its twin's values
    run after run.
    """
    problems = []
    ui_nodes = {str(node["id"]): node for node in ui.get("nodes", []) if node.get("mode", 0) != 4}
    if set(ui_nodes) != set(api):
        problems.append(f"node ids differ: UI {sorted(ui_nodes, key=int)} vs API {sorted(api, key=int)}")
    links = _ui_links(ui)
    for node_id in sorted(set(ui_nodes) & set(api), key=int):
        node, twin = ui_nodes[node_id], api[node_id]
        cls = twin["class_type"]
        where = f"node {node_id} ({cls})"
        if node["type"] != cls:
            problems.append(f"{where}: the UI file has a {node['type']} here")
            continue
        if cls not in sigs:
            continue  # reported by check_ui
        shown = list(zip(editor_widgets(cls, sigs[cls]), node.get("widgets_values") or []))
        widget_values = {w.name: v for w, v in shown if w.kind == "input"}
        for name, value in twin["inputs"].items():
            linked = links.get((node["id"], name))
            if isinstance(value, list):
                if linked != (int(value[0]), value[1]):
                    problems.append(f"{where}: input {name!r} is linked from {value} in the API file, "
                                    f"from {list(linked) if linked else 'nothing'} in the UI file")
            elif linked:
                problems.append(f"{where}: input {name!r} is {value!r} in the API file but linked in the UI file")
            elif name not in widget_values:
                problems.append(f"{where}: input {name!r} has no widget value in the UI file")
            elif not _same_value(widget_values[name], value):
                problems.append(f"{where}: input {name!r} is {value!r} in the API file, "
                                f"the editor shows {widget_values[name]!r}")
        for widget, value in shown:
            if widget.kind == "input" and widget.name not in twin["inputs"]:
                problems.append(f"{where}: the API file has no value for {widget.name!r} "
                                f"(the editor shows {value!r}); give it one, then re-run the generator")
            if widget.kind == "control" and value != "fixed":
                problems.append(f"{where}: the control after generate is {value!r}; "
                                f"a template keeps it 'fixed' so that each run queues its API twin's values")
    api_links = sum(isinstance(v, list) for n in api.values() for v in n["inputs"].values())
    if len(ui.get("links", [])) != api_links:
        problems.append(f"link count differs: UI {len(ui.get('links', []))} vs API {api_links}")
    return problems
