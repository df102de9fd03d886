"""Draw the template dialog's thumbnails: workflows/<name>.jpg beside each workflows/<name>.json.

ComfyUI's template dialog (frontend 1.35.9) shows a pack's template with the picture it fetches
from /api/workflow_templates/<pack folder>/<name>.jpg, which ComfyUI serves from the pack's
workflows/ folder (a missing one is a 404 and a console error each time the dialog opens). Each
thumbnail shows what its workflow does, computed by running the workflow's Kubik nodes here:
the demo classifier's verdict on the template's digit, the mesh the 3D template makes from its
picture (rendered with OpenGL: EGL or OSMesa), the plan the prompt-plan template computes. The
templates that need a checkpoint get a diagram of their graph instead.

    python scripts/workflow_thumbnails.py
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / "workflows"
SIZE = 512
BACKGROUND = (32, 33, 36)
PANEL = (48, 50, 55)
TEXT = (236, 236, 236)
MUTED = (160, 164, 170)
ACCENT = (88, 166, 255)      # Kubik nodes and results
CORE_NODE = (74, 77, 84)
LINK = (120, 124, 130)


def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    import matplotlib

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


def _load_pack():
    spec = importlib.util.spec_from_file_location("kubik_pack", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["kubik_pack"] = module
    spec.loader.exec_module(module)
    return module


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def run_node(pack, api: dict, node_id: str, done: dict | None = None) -> tuple:
    """Outputs of ``node_id`` with everything it depends on, run as ComfyUI's executor calls the
    Kubik nodes (FUNCTION with the API inputs; linked inputs take their source's outputs)."""
    done = {} if done is None else done
    if node_id not in done:
        node = api[node_id]
        cls = pack.NODE_CLASS_MAPPINGS[node["class_type"]]
        inputs = {name: run_node(pack, api, str(v[0]), done)[v[1]] if _is_link(v) else v
                  for name, v in node["inputs"].items()}
        out = getattr(cls(), cls.FUNCTION)(**inputs)
        done[node_id] = out["result"] if isinstance(out, dict) else out
    return done[node_id]


def _to_pil(image) -> Image.Image:
    """The first picture of a ComfyUI IMAGE batch."""
    return Image.fromarray((image[0].clamp(0, 1).numpy() * 255).round().astype(np.uint8))


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    canvas = Image.new("RGB", (SIZE, SIZE), BACKGROUND)
    return canvas, ImageDraw.Draw(canvas)


def _arrow(draw, x0: int, x1: int, y: int) -> None:
    draw.line([(x0, y), (x1 - 10, y)], fill=MUTED, width=4)
    draw.polygon([(x1, y), (x1 - 14, y - 9), (x1 - 14, y + 9)], fill=MUTED)


def classify_thumbnail(pack, api: dict) -> Image.Image:
    """The template's digit and the shipped classifier's verdict on it."""
    classify = next(n for n, node in api.items() if node["class_type"] == "KubikClassifyImage")
    picture = next(n for n, node in api.items() if node["class_type"] == "KubikExampleImage")
    done: dict = {}
    verdict = json.loads(run_node(pack, api, classify, done)[2])[0]
    canvas, draw = _canvas()
    digit = _to_pil(done[picture][0]).resize((216, 216), Image.NEAREST)
    draw.rounded_rectangle([30, 128, 262, 360], radius=10, fill=PANEL)
    canvas.paste(digit, (38, 136))
    _arrow(draw, 280, 322, 244)
    draw.text((402, 226), verdict["labels"][0], font=_font(170, bold=True), fill=ACCENT, anchor="mm")
    score = verdict["scores"][0]
    draw.rounded_rectangle([340, 380, 470, 394], radius=7, fill=PANEL)
    draw.rounded_rectangle([340, 380, 340 + round(130 * score), 394], radius=7, fill=ACCENT)
    draw.text((405, 418), f"{score:.1%}", font=_font(24, bold=True), fill=TEXT, anchor="mm")
    draw.text((SIZE // 2, 470), "digits demo classifier, top-1", font=_font(20), fill=MUTED, anchor="mm")
    return canvas


def mesh_thumbnail(pack, api: dict) -> Image.Image:
    """The template's picture and a render of the mesh the template makes from it."""
    import trimesh

    from kubik_core.recon3d.data.render import MeshRenderer, RenderConfig

    decode = next(n for n, node in api.items() if node["class_type"] == "KubikDecodeShape")
    picture = next(n for n, node in api.items() if node["class_type"] == "KubikExampleImage")
    done: dict = {}
    mesh = run_node(pack, api, decode, done)[0][0]  # a list output: one MESH per picture
    mesh = trimesh.Trimesh(mesh.vertices[0].numpy(), mesh.faces[0].numpy())
    renderer = MeshRenderer(RenderConfig(views=8, ring=8, ring_elevation_deg=25, resolution=300,
                                         depth=False, normals=False))
    try:
        views, _ = renderer.render(mesh)
    finally:
        renderer.close()
    canvas, draw = _canvas()
    image, mask = done[picture]
    source = Image.fromarray(np.dstack([(image[0].numpy() * 255).astype(np.uint8),
                                        ((1 - mask[0].numpy()) * 255).astype(np.uint8)]), "RGBA")
    draw.rounded_rectangle([22, 166, 202, 346], radius=10, fill=PANEL)
    canvas.paste(source.resize((164, 164), Image.LANCZOS), (30, 174), source.resize((164, 164), Image.LANCZOS))
    _arrow(draw, 214, 252, 256)
    front = Image.fromarray(views[0]["rgba"], "RGBA").resize((220, 220), Image.LANCZOS)
    canvas.paste(front, (271, 146), front)
    draw.text((112, 400), "picture", font=_font(22), fill=MUTED, anchor="mm")
    draw.text((381, 400), "its mesh", font=_font(22), fill=MUTED, anchor="mm")
    return canvas


def plan_thumbnail(pack, api: dict) -> Image.Image:
    """The template's prompt and the sampling plan computed for it."""
    optimizer = next(n for n, node in api.items() if node["class_type"] == "KubikParameterOptimizer")
    analyzer = next(n for n, node in api.items() if node["class_type"] == "KubikPromptAnalyzer")
    plan = run_node(pack, api, optimizer)[0]
    canvas, draw = _canvas()
    lines = textwrap.wrap(api[analyzer]["inputs"]["prompt"], 40)[:5]
    draw.rounded_rectangle([24, 196 - 32 - 27 * len(lines), SIZE - 24, 196], radius=12, fill=PANEL)
    draw.multiline_text((42, 196 - 16 - 27 * len(lines)), "\n".join(lines), font=_font(19), fill=MUTED,
                        spacing=8)
    draw.line([(SIZE // 2, 204), (SIZE // 2, 222)], fill=MUTED, width=4)
    draw.polygon([(SIZE // 2, 236), (SIZE // 2 - 14, 214), (SIZE // 2 + 14, 214)], fill=MUTED)
    draw.text((SIZE // 2, 284), f"{plan.width} × {plan.height}", font=_font(46, bold=True), fill=ACCENT,
              anchor="mm")
    draw.text((SIZE // 2, 346), f"{plan.steps} steps   CFG {plan.cfg:g}", font=_font(32, bold=True),
              fill=TEXT, anchor="mm")
    draw.text((SIZE // 2, 398), f"{plan.sampler_name} / {plan.scheduler}", font=_font(24), fill=TEXT, anchor="mm")
    draw.text((SIZE // 2, 460), f"{plan.family}, {plan.priority} priority", font=_font(22), fill=MUTED,
              anchor="mm")
    return canvas


def _node_label(node: dict, display_names: dict) -> str:
    """A node's title as the editor shows it, short: "Kubik Parameter Optimizer" -> "Parameter Optimizer",
    a core "EmptyLatentImage" -> "Empty Latent Image"."""
    title = node.get("title") or display_names.get(node["type"]) or \
        re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z]{2})(?=[A-Z][a-z])", " ", node["type"])
    return title.split(" (")[0].removeprefix("Kubik ")


def graph_thumbnail(ui: dict, api: dict, display_names: dict) -> Image.Image:
    """A diagram of the graph: the UI file's columns, Kubik nodes in the accent colour."""
    columns: dict[float, list[dict]] = {}
    for node in ui["nodes"]:
        columns.setdefault(node["pos"][0], []).append(node)
    ordered = [sorted(columns[x], key=lambda n: n["pos"][1]) for x in sorted(columns)]
    canvas, draw = _canvas()
    margin, gap, row_gap = 12, 10, 22
    width = (SIZE - 2 * margin - gap * (len(ordered) - 1)) / len(ordered)
    boxes, labels = {}, {}
    for c, column in enumerate(ordered):
        for node in column:
            labels[node["id"]] = textwrap.wrap(_node_label(node, display_names), max(6, int(width / 9.5)),
                                               break_long_words=False)[:3]
        heights = [18 + 19 * len(labels[node["id"]]) for node in column]
        y = (SIZE - 60 - sum(heights) - row_gap * (len(column) - 1)) / 2
        x = margin + c * (width + gap)
        for node, height in zip(column, heights):
            boxes[node["id"]] = (x, y, x + width, y + height)
            y += height + row_gap
    for _, src_id, _, dst_id, *_ in ui["links"]:
        sx0, sy0, sx1, sy1 = boxes[src_id]
        dx0, dy0, dx1, dy1 = boxes[dst_id]
        start, end = (sx1, (sy0 + sy1) / 2), (dx0, (dy0 + dy1) / 2)
        if end[0] <= start[0]:  # same column: join bottom to top
            start, end = ((sx0 + sx1) / 2, sy1), ((dx0 + dx1) / 2, dy0)
        points = [(start[0] + (end[0] - start[0]) * t, start[1] + (end[1] - start[1]) * (3 * t * t - 2 * t ** 3))
                  for t in np.linspace(0, 1, 24)]
        draw.line(points, fill=LINK, width=2, joint="curve")
    for node in ui["nodes"]:
        x0, y0, x1, y1 = boxes[node["id"]]
        ours = node["type"].startswith("Kubik")
        draw.rounded_rectangle([x0, y0, x1, y1], radius=8, fill=ACCENT if ours else CORE_NODE)
        size = 15  # smaller where a long word would not fit the box
        while size > 10 and max(_font(size, bold=True).getlength(line) for line in labels[node["id"]]) > x1 - x0 - 6:
            size -= 1
        draw.multiline_text(((x0 + x1) / 2, (y0 + y1) / 2), "\n".join(labels[node["id"]]), font=_font(size, bold=True),
                            fill=(16, 18, 22) if ours else TEXT, anchor="mm", align="center", spacing=4)
    legend = _font(18)
    draw.rounded_rectangle([24, SIZE - 66, 40, SIZE - 50], radius=4, fill=ACCENT)
    draw.text((48, SIZE - 58), "Kubik", font=legend, fill=MUTED, anchor="lm")
    draw.rounded_rectangle([120, SIZE - 66, 136, SIZE - 50], radius=4, fill=CORE_NODE)
    draw.text((144, SIZE - 58), "ComfyUI", font=legend, fill=MUTED, anchor="lm")
    checkpoints = [node["inputs"].get("ckpt_name", "") for node in api.values()
                   if node["class_type"] == "CheckpointLoaderSimple"]
    if checkpoints:  # the template's own checkpoint says which kind it needs
        kind = "an SDXL" if "xl" in str(checkpoints[0]).lower() else "an SD1.5"
        draw.text((SIZE - 24, SIZE - 58), f"needs {kind} checkpoint", font=legend, fill=MUTED, anchor="rm")
    return canvas


MAKERS = {"KubikClassifyImage": classify_thumbnail, "KubikDecodeShape": mesh_thumbnail}


def make(name: str, pack) -> Image.Image:
    ui = json.loads((WORKFLOWS / f"{name}.json").read_text())
    api = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
    types = {node["class_type"] for node in api.values()}
    for node_type, maker in MAKERS.items():
        if node_type in types:
            return maker(pack, api)
    if "CheckpointLoaderSimple" not in types and "KubikParameterOptimizer" in types:
        return plan_thumbnail(pack, api)
    return graph_thumbnail(ui, api, pack.NODE_DISPLAY_NAME_MAPPINGS)


def main() -> None:
    sys.path.insert(0, str(REPO))
    # The plan must not depend on what this machine's learning store has learned.
    os.environ["KUBIK_LEARNING_URL"] = str(Path(tempfile.mkdtemp()) / "learning.sqlite")
    pack = _load_pack()
    for path in sorted(WORKFLOWS.glob("*.json")):
        make(path.stem, pack).save(path.with_suffix(".jpg"), quality=90, optimize=True)
        print(f"wrote {path.with_suffix('.jpg').relative_to(REPO)}")


if __name__ == "__main__":
    main()
