"""Workflows for ComfyUI's queue: load, convert from the editor's format, address, set, sweep.

ComfyUI's ``/prompt`` takes the API format (``{"<id>": {"class_type", "inputs"}}``); its editor
saves the UI format (nodes with positional ``widgets_values`` and a link table), and the server
has no converter. :func:`to_api` converts with the server's own ``/object_info``: widget values
are matched to inputs in the order the editor builds its widgets (comfyui-frontend-package 1.35,
the one ComfyUI 0.8.0 installs), which includes the extra "control after generate" value after a
seed-like input. Every value a user sets (``--set``, ``--sweep``) is checked against
``/object_info`` before anything is sent, so a typo costs one clear line, not a queue of
rejected jobs.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..common import bounded_json

MAX_WORKFLOW_BYTES = 32 * 1024 * 1024
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
SEED_NAMES = ("seed", "noise_seed")
MEDIA_UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")
# Value-keeping widgets that frontend extensions add to these core nodes after their inputs.
EXTENSION_WIDGETS = {"Preview3D": 1, "SaveGLB": 1, "PreviewAny": 1}
# Core nodes whose editor widgets follow rules of their own (3D loader buttons, webcam, dynamic
# combos): their UI-format values cannot be mapped by position with confidence.
UNMODELLED = frozenset({"Load3D", "LoadImageOutput", "LoadVideo", "WebcamCapture", "CustomCombo",
                        "ResizeImageMaskNode"})
# Nodes that exist only in the editor and never reach the server.
EDITOR_ONLY = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
MUTED, BYPASSED = 2, 4
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class WorkflowError(ValueError):
    """A workflow file, node address or value that cannot be queued; the message says why."""


@dataclass(frozen=True)
class InputSpec:
    """One input of a node type as /object_info declares it."""
    name: str
    type: str                      # INT, FLOAT, STRING, BOOLEAN, COMBO or a socket type
    required: bool
    options: dict = field(default_factory=dict)
    choices: tuple = ()

    @property
    def has_widget(self) -> bool:
        return self.type in WIDGET_TYPES and not self.options.get("forceInput")

    @property
    def is_seed(self) -> bool:
        """Whether the editor adds "control after generate" after it (seed-like INT)."""
        declared = self.options.get("control_after_generate")
        return self.type == "INT" and (declared if declared is not None else self.name in SEED_NAMES)


def node_inputs(object_info: dict, class_type: str) -> list[InputSpec]:
    """The inputs of ``class_type`` in the editor's order (required, then optional)."""
    info = object_info.get(class_type)
    if not isinstance(info, dict):
        return []
    declared, order = info.get("input") or {}, info.get("input_order") or {}
    specs = []
    for category in ("required", "optional"):
        entries = declared.get(category) or {}
        if not isinstance(entries, dict):
            continue
        names = order.get(category) if isinstance(order.get(category), list) else list(entries)
        for name in names:
            spec = entries.get(name)
            if not isinstance(spec, (list, tuple)) or not spec:
                continue
            kind, extra = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
            if isinstance(kind, list):
                specs.append(InputSpec(name, "COMBO", category == "required", extra, tuple(kind)))
            elif kind == "COMBO":
                specs.append(InputSpec(name, "COMBO", category == "required", extra,
                                       tuple(extra.get("options") or ())))
            else:
                specs.append(InputSpec(name, str(kind), category == "required", extra))
    return specs


# ---------------------------------------------------------------------------------- loading
def load_workflow(path: str | os.PathLike) -> dict:
    """The JSON of a workflow file (either format), refused with one line when it is not one."""
    path = Path(path)
    try:
        if not path.is_file():
            raise WorkflowError(f"{path}: no such workflow file")
        size = path.stat().st_size
        if size > MAX_WORKFLOW_BYTES:
            raise WorkflowError(f"{path}: {size} bytes is too large for a workflow "
                                f"(limit {MAX_WORKFLOW_BYTES // (1024 * 1024)} MiB)")
        data = bounded_json.loads(path.read_bytes(), max_bytes=MAX_WORKFLOW_BYTES)
    except bounded_json.BoundedJSONError as exc:
        raise WorkflowError(f"{path}: {exc}") from None
    except OSError as exc:
        raise WorkflowError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not isinstance(data, dict) or not (is_ui_format(data) or is_api_format(data)):
        raise WorkflowError(f"{path}: not a ComfyUI workflow (neither the editor's format with 'nodes' "
                            "and 'links' nor the API format of {\"id\": {\"class_type\", \"inputs\"}})")
    if is_api_format(data) and not data:
        raise WorkflowError(f"{path}: the workflow has no nodes")
    return data


def is_ui_format(data: dict) -> bool:
    return isinstance(data.get("nodes"), list) and isinstance(data.get("links", []), list)


def is_api_format(data: dict) -> bool:
    return "nodes" not in data and all(
        isinstance(v, dict) and isinstance(v.get("class_type"), str) and isinstance(v.get("inputs", {}), dict)
        for v in data.values())


def to_api(data: dict, object_info: dict) -> dict:
    """The API-format workflow of ``data`` (either format), every node type known to the server."""
    api = copy.deepcopy(data) if is_api_format(data) else _ui_to_api(data, object_info)
    for node_id, node in api.items():
        node.setdefault("inputs", {})
        if node["class_type"] not in object_info:
            raise WorkflowError(f"node {node_id} is a {node['class_type']!r}, which the server does not "
                                "have (a custom node pack missing there?)")
    return api


def _ui_links(data: dict) -> dict[int, tuple[Any, int]]:
    """link id -> (source node id, source output slot), from either link encoding."""
    links = {}
    for link in data.get("links") or []:
        if isinstance(link, list) and len(link) >= 5:
            link_id, origin, slot = link[0], link[1], link[2]
        elif isinstance(link, dict):
            link_id, origin, slot = link.get("id"), link.get("origin_id"), link.get("origin_slot")
        else:
            link_id = origin = slot = None
        if not _is_id(link_id) or not _is_id(origin) or not isinstance(slot, int) or isinstance(slot, bool):
            raise WorkflowError(f"link {str(link)[:60]!r} is not a link of the editor's format")
        links[link_id] = (origin, slot)
    return links


def _is_id(value) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _ui_to_api(data: dict, object_info: dict) -> dict:
    if (data.get("definitions") or {}).get("subgraphs"):
        raise WorkflowError("the workflow uses subgraphs; export it in API format from the editor "
                            "(Workflow > Export (API)) and queue that file")
    nodes = {}
    for node in data["nodes"]:
        if not isinstance(node, dict) or not _is_id(node.get("id")) or not isinstance(node.get("type"), str):
            raise WorkflowError(f"node {str(node)[:60]!r} has no id or type")
        if node["id"] in nodes:
            raise WorkflowError(f"node id {node['id']} appears twice")
        nodes[node["id"]] = node
    links = _ui_links(data)

    def source_of(link_id, where: str):
        """The (node, slot) feeding a link, through editor-only reroutes; None for a primitive."""
        seen = set()
        while True:
            if not _is_id(link_id) or link_id not in links:
                raise WorkflowError(f"{where} points to link {link_id}, which the file does not have")
            src_id, slot = links[link_id]
            src = nodes.get(src_id)
            if src is None:
                raise WorkflowError(f"{where} is linked from node {src_id}, which the file does not have")
            if src.get("mode") in (MUTED, BYPASSED):
                raise WorkflowError(f"{where} is linked from node {src_id} ({src['type']}), which is muted or "
                                    "bypassed; re-enable it or export the workflow in API format")
            if src["type"] == "PrimitiveNode":
                return None
            if src["type"] != "Reroute":
                return str(src_id), slot
            if src_id in seen:
                raise WorkflowError(f"{where} goes round a loop of reroutes")
            seen.add(src_id)
            feeds = src.get("inputs")
            upstream = feeds[0].get("link") if isinstance(feeds, list) and feeds and isinstance(feeds[0], dict) else None
            if upstream is None:
                raise WorkflowError(f"{where} is linked from a reroute that nothing feeds")
            link_id = upstream

    api = {}
    for node_id, node in nodes.items():
        cls = node["type"]
        if cls in EDITOR_ONLY or node.get("mode") in (MUTED, BYPASSED):
            continue
        where = f"node {node_id} ({cls})"
        if cls not in object_info:
            raise WorkflowError(f"{where}: the server has no node type {cls!r} (a custom node pack missing there?)")
        if cls in UNMODELLED:
            raise WorkflowError(f"{where}: the editor builds this node's widgets by rules of its own; "
                                "export the workflow in API format (Workflow > Export (API)) and queue that")
        specs = node_inputs(object_info, cls)
        inputs: dict[str, Any] = {}
        linked = {}
        entries = node.get("inputs") or []
        for entry in entries if isinstance(entries, list) else ():
            if not isinstance(entry, dict) or entry.get("link") is None:
                continue
            widget = entry.get("widget")
            name = widget.get("name") if isinstance(widget, dict) else None
            name = name if isinstance(name, str) else entry.get("name")
            if isinstance(name, str):
                linked[name] = source_of(entry["link"], f"{where} input {name!r}")
        values = node.get("widgets_values")
        widget_values = _widget_values(cls, specs, values, where)
        for spec in specs:
            source = linked.get(spec.name)
            if source is not None:
                inputs[spec.name] = [source[0], source[1]]
            elif spec.name in widget_values:
                inputs[spec.name] = widget_values[spec.name]
        api_node = {"class_type": cls, "inputs": inputs}
        if isinstance(node.get("title"), str):
            api_node["_meta"] = {"title": node["title"]}
        api[str(node_id)] = api_node
    if not api:
        raise WorkflowError("the workflow has no node that runs on the server")
    return api


def _widget_values(cls: str, specs: list[InputSpec], values, where: str) -> dict:
    """Input name -> widget value, read from a UI node's ``widgets_values``."""
    if values is None:
        values = []
    if isinstance(values, dict):  # some packs save widgets by name
        return {s.name: values[s.name] for s in specs if s.has_widget and s.name in values}
    if not isinstance(values, list):
        raise WorkflowError(f"{where}: widgets_values is a {type(values).__name__}, not a list")
    slots: list[str | None] = []   # input name, or None for a value that belongs to no input
    for spec in specs:
        if not spec.has_widget:
            continue
        slots.append(spec.name)
        declared = spec.options.get("control_after_generate")
        if spec.is_seed or (spec.type == "FLOAT" and declared):
            slots.append(None)
        elif spec.type == "COMBO" and declared:
            slots += [None, None]   # control after generate, and its filter list
    if any(s.required and s.type == "COMBO" and any(s.options.get(f) for f in MEDIA_UPLOAD_FLAGS) for s in specs):
        slots.append(None)          # the upload button
    slots += [None] * EXTENSION_WIDGETS.get(cls, 0)
    if len(values) != len(slots):
        raise WorkflowError(f"{where}: {len(values)} widget values where the server's node has {len(slots)} "
                            "widgets (saved with another version of the node?); open and re-save it in the "
                            "editor, or export the workflow in API format")
    return {name: value for name, value in zip(slots, values) if name is not None}


# ---------------------------------------------------------------------------------- addressing
def resolve_node(api: dict, ref: str) -> str:
    """The id of the node that ``ref`` names: its id, else its title, else its node type (a title
    or type must name one node only)."""
    if ref in api:
        return ref
    titled = [node_id for node_id, node in api.items()
              if isinstance(node.get("_meta"), dict) and node["_meta"].get("title") == ref]
    if len(titled) == 1:
        return titled[0]
    if len(titled) > 1:
        raise WorkflowError(f"{len(titled)} nodes are titled {ref!r} (ids {', '.join(titled)}); use the node id")
    typed = [node_id for node_id, node in api.items() if node["class_type"] == ref]
    if len(typed) == 1:
        return typed[0]
    if len(typed) > 1:
        raise WorkflowError(f"{len(typed)} nodes are {ref!r} nodes (ids {', '.join(typed)}); use the node id or a title")
    known = sorted({n["_meta"]["title"] for n in api.values()
                    if isinstance(n.get("_meta"), dict) and isinstance(n["_meta"].get("title"), str)})
    hint = f"; titles: {', '.join(repr(t) for t in known[:12])}" if known else ""
    raise WorkflowError(f"no node has the id, title or type {ref!r} (ids: {', '.join(sorted(api, key=_id_order)[:20])}{hint})")


def _id_order(node_id: str):
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def split_assignment(text: str, flag: str) -> tuple[str, str, str]:
    """``NODE.INPUT=VALUE`` -> (node, input, value); a title may hold dots, an input name cannot."""
    target, sep, value = text.partition("=")
    node, dot, name = target.rpartition(".")
    if not sep or not dot or not node.strip() or not name.strip():
        raise WorkflowError(f"{flag} {text!r}: expected NODE.INPUT=VALUE (NODE an id or a title), "
                            f"e.g. {flag} 3.seed=42")
    return node.strip(), name.strip(), value


def coerce_value(text: str, spec: InputSpec, where: str):
    """``text`` as a value of ``spec``, checked against its type, range and choices."""
    kind, opts = spec.type, spec.options
    if not spec.has_widget:
        raise WorkflowError(f"{where} is a {kind} input fed by a link; only widget values "
                            "(numbers, text, choices, booleans) can be set")
    if kind == "COMBO":
        if text not in spec.choices:
            shown = ", ".join(repr(c) for c in spec.choices[:15]) + (", ..." if len(spec.choices) > 15 else "")
            raise WorkflowError(f"{where}: {text!r} is not one of the server's choices ({shown or 'none'})")
        return text
    if kind == "BOOLEAN":
        lowered = text.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise WorkflowError(f"{where}: {text!r} is not a boolean (true or false)")
    if kind == "STRING":
        return text
    try:
        value = int(text) if kind == "INT" else float(text)
    except ValueError:
        raise WorkflowError(f"{where}: {text!r} is not {'an integer' if kind == 'INT' else 'a number'}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise WorkflowError(f"{where}: {text!r} is not a finite number")
    if "min" in opts and isinstance(opts["min"], (int, float)) and value < opts["min"]:
        raise WorkflowError(f"{where}: {value} is below the minimum {opts['min']}")
    if "max" in opts and isinstance(opts["max"], (int, float)) and value > opts["max"]:
        raise WorkflowError(f"{where}: {value} is above the maximum {opts['max']}")
    return value


def _target(api: dict, object_info: dict, node_ref: str, name: str, flag: str) -> tuple[str, InputSpec, str]:
    node_id = resolve_node(api, node_ref)
    cls = api[node_id]["class_type"]
    specs = {s.name: s for s in node_inputs(object_info, cls)}
    where = f"{flag} {node_ref}.{name} (node {node_id}, {cls})"
    if name not in specs:
        names = ", ".join(n for n, s in specs.items() if s.has_widget)
        raise WorkflowError(f"{where}: the node has no input {name!r} (its widget inputs: {names or 'none'})")
    return node_id, specs[name], where


# ---------------------------------------------------------------------------------- jobs
@dataclass
class Job:
    """One prompt to queue: its stable name and key (the resume identity), and what varies."""
    name: str
    key: str
    prompt: dict
    values: dict          # "node.input" -> value set by --set / --sweep / --repeat


def job_key(prompt: dict) -> str:
    """A digest of the prompt as ComfyUI runs it (titles left out): equal keys, equal work."""
    runnable = {nid: {"class_type": n["class_type"], "inputs": n.get("inputs", {})} for nid, n in prompt.items()}
    text = json.dumps(runnable, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def seed_inputs(api: dict, object_info: dict) -> list[tuple[str, InputSpec]]:
    """(node id, input) of every seed-like value (not a link) in the workflow."""
    found = []
    for node_id in sorted(api, key=_id_order):
        node = api[node_id]
        for spec in node_inputs(object_info, node["class_type"]):
            if spec.is_seed and not isinstance(node["inputs"].get(spec.name, 0), list):
                found.append((node_id, spec))
    return found


def expand_jobs(api: dict, object_info: dict, sets: list[str] = (), sweeps: list[str] = (),
                repeat: int = 1) -> list[Job]:
    """The jobs of one run: ``api`` with every ``--set``, each combination of the ``--sweep``
    lists (the first sweep varying slowest), each queued ``repeat`` times with its seeds
    increased by 0, 1, ... as the editor's "increment" does (ComfyUI would otherwise answer a
    repeat from its cache)."""
    base = copy.deepcopy(api)
    fixed = {}
    for text in sets:
        node_ref, name, raw = split_assignment(text, "--set")
        node_id, spec, where = _target(base, object_info, node_ref, name, "--set")
        base[node_id]["inputs"][name] = fixed[f"{node_id}.{name}"] = coerce_value(raw, spec, where)
    axes = []
    for text in sweeps:
        node_ref, name, raw = split_assignment(text, "--sweep")
        node_id, spec, where = _target(base, object_info, node_ref, name, "--sweep")
        pieces = raw.split(",")
        values = [coerce_value(p if spec.type == "STRING" else p.strip(), spec, where) for p in pieces]
        if any(values.count(v) > 1 for v in values):
            raise WorkflowError(f"{where}: the list repeats a value; use --repeat to run a value again")
        if any(a[0] == (node_id, name) for a in axes):
            raise WorkflowError(f"{where}: this input is swept twice; give it one list")
        axes.append(((node_id, name), values))
    if not isinstance(repeat, int) or repeat < 1:
        raise WorkflowError(f"--repeat {repeat}: must be 1 or more")
    seeds = seed_inputs(base, object_info) if repeat > 1 else []
    if repeat > 1 and not seeds:
        raise WorkflowError(f"--repeat {repeat}: the workflow has no seed to vary, so ComfyUI would only "
                            "answer the repeats from its cache; sweep a value instead")
    jobs, keys = [], {}
    for combo in itertools.product(*[values for _, values in axes]) if axes else [()]:
        for r in range(repeat):
            prompt = copy.deepcopy(base)
            varied = dict(fixed)
            for ((node_id, name), _), value in zip(axes, combo):
                prompt[node_id]["inputs"][name] = varied[f"{node_id}.{name}"] = value
            for node_id, spec in seeds if r else ():
                start = prompt[node_id]["inputs"].get(spec.name, spec.options.get("default", 0))
                if not isinstance(start, int) or isinstance(start, bool):
                    raise WorkflowError(f"--repeat: node {node_id}'s {spec.name} is {str(start)[:40]!r}, not an integer")
                top = spec.options.get("max", 2 ** 64 - 1)
                top = top if isinstance(top, int) and top > 0 else 2 ** 64 - 1
                prompt[node_id]["inputs"][spec.name] = varied[f"{node_id}.{spec.name}"] = (start + r) % (top + 1)
            key = job_key(prompt)
            if key in keys:
                raise WorkflowError(f"jobs {keys[key]} and {len(jobs)} would queue the same prompt; "
                                    "check the --sweep and --repeat values")
            keys[key] = len(jobs)
            jobs.append(Job(name=f"job{len(jobs):04d}-{key[:8]}", key=key, prompt=prompt, values=varied))
    return jobs
