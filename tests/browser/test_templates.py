"""Every template in workflows/, opened and run in ComfyUI's real editor, as a user would.

A headless Chromium drives ComfyUI 0.8.0's editor (comfyui-frontend-package) on a real server
with the pack installed. For each template it opens the template dialog, clicks the template's
card and checks what the user then has in front of them:
- every node type is known (no "missing nodes");
- every Kubik node's widgets hold the values of the template's API twin (workflows/api/, same
  node ids), read by name from the live graph: the editor inserts widgets of its own (e.g.
  "control after generate" after a seed) and a UI file that forgets them opens shifted;
- the prompt the editor would queue equals the API twin, node by node;
- no console errors, error toasts or error dialogs.
It then queues the template with the Run button and checks that the outputs exist and reached
the editor. Where a template samples, the user first picks the tiny test checkpoint from Load
Checkpoint's menu (and the tiny test ControlNet from Load ControlNet Model's) and sets the
Parameter Optimizer to a 2-step 64x64 MANUAL run (the template's own AUTO plan takes minutes on a
CPU). Kubik Consistency gets the tiny test encoder folder from its encoder menu, and Load CLIP
Vision, which would feed it the template's CLIP vision model (not on the test server, and no tiny
one loads in ComfyUI's CLIP vision loader), is deleted. Screenshots of each step are saved (see
conftest.screenshot_dirs).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image

from kubik_testing.pack import REPO

pytestmark = pytest.mark.integration

TEMPLATES = sorted((REPO / "workflows").glob("*.json"))

# Requests the editor makes for a user's own files (custom CSS, saved workflows, settings not yet
# set) and Chromium's favicon request: on a fresh user folder ComfyUI answers 404 and Chromium logs
# each as a console error. They concern neither the pack nor its templates.
FRESH_USER_404S = ("/user.css", "/favicon.ico", "/api/userdata/user.css", "/api/userdata/comfy.templates.json",
                   "/api/userdata?dir=workflows&", "/api/userdata?dir=subgraphs&", "/api/settings/")
# Output nodes whose results the user looks for, by what they show.
IMAGE_NODES = {"SaveImage", "PreviewImage", "KubikSaveImage"}
TEXT_NODES = {"PreviewAny", "KubikExplain", "KubikConsistency"}
MESH_NODES = {"SaveGLB"}
# A quick sampling run on a CPU: what a user testing the graph would set on the optimizer. The
# template's AUTO settings pick SD1.5's 25 steps at 512x704, minutes per image on two CPU cores.
QUICK_SAMPLING = {"mode": "MANUAL", "steps": 2, "width": 64, "height": 64}

# ---------------------------------------------------------------------- JavaScript run in the page
JS_READY = "() => !!(window.app && app.graph && app.extensionManager && window.LiteGraph)"
JS_HAS_NODES = """(expected) => expected.every(([id, type]) => {
    const node = app.graph.getNodeById(id); return node && node.type === type; })"""
JS_LIVE_NODES = """() => app.graph.nodes.map(node => ({
    id: String(node.id), type: node.type, registered: !!LiteGraph.registered_node_types[node.type],
    linked: (node.inputs || []).filter(i => i.link != null && i.widget).map(i => i.widget.name),
    widgets: (node.widgets || []).map(w => ({name: w.name, value: w.value,
                                              serialized: !(w.options && w.options.serialize === false)})),
}))"""
JS_PROMPT = "async () => (await app.graphToPrompt()).output"
JS_WIDGET_CENTRE = """([id, name]) => {
    const node = app.graph.getNodeById(id);
    const widget = node.widgets.find(w => w.name === name);
    const height = widget.computedHeight || LiteGraph.NODE_WIDGET_HEIGHT;
    const [x, y] = app.canvas.ds.convertOffsetToCanvas(
        [node.pos[0] + node.size[0] / 2, node.pos[1] + widget.y + height / 2]);
    const box = app.canvas.canvas.getBoundingClientRect();
    return [box.left + x * box.width / app.canvas.canvas.width,
            box.top + y * box.height / app.canvas.canvas.height];
}"""
JS_SET_WIDGET = """([id, name, value]) => {
    const node = app.graph.getNodeById(id);
    const widget = node.widgets.find(w => w.name === name);
    widget.value = value;
    if (widget.callback) widget.callback(value, app.canvas, node);
    app.graph.setDirtyCanvas(true, true);
}"""
JS_REMOVE_NODE = "(id) => { app.graph.remove(app.graph.getNodeById(id)); app.graph.setDirtyCanvas(true, true); }"
JS_HAS_OUTPUTS = "(ids) => ids.every(id => app.nodeOutputs && app.nodeOutputs[id])"


def _twin(template: Path) -> dict:
    twin = template.parent / "api" / template.name
    assert twin.exists(), f"{template.name} has no API twin in workflows/api/"
    return json.loads(twin.read_text())


def _declared_inputs(server) -> dict[str, set[str]]:
    """Each node class's declared input names (required and optional), from /object_info."""
    if not hasattr(server, "declared_inputs"):
        server.declared_inputs = {
            name: set(info["input"].get("required") or {}) | set(info["input"].get("optional") or {})
            for name, info in server.get("/object_info").items()}
    return server.declared_inputs


def _same(a, b) -> bool:
    """Equal as the server would read them: numbers to float precision, booleans only to booleans."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


class Editor:
    """One browser tab on ComfyUI's editor, recording what would show the user something went wrong."""

    def __init__(self, page, server, screenshot_dirs: list[Path]):
        self.page, self.server, self.screenshot_dirs = page, server, screenshot_dirs
        self.console_errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.console_errors.append(f"uncaught error: {error}"))

    def _on_console(self, message) -> None:
        if message.type != "error":
            return
        url = message.location.get("url", "")
        if message.text.startswith("Failed to load resource"):
            split = urlsplit(url)
            where = split.path + ("?" + split.query if split.query else "")
            if where.startswith(FRESH_USER_404S):
                return
        self.console_errors.append(f"{message.text} [{url}]")

    # ------------------------------------------------------------------ what the user does
    def open(self) -> None:
        self.page.goto(self.server.url)
        self.page.wait_for_function(JS_READY, timeout=60_000)

    def open_template_dialog(self) -> None:
        self.page.locator(".side-bar-button", has_text="Templates").click()
        self.page.get_by_text(self.server.pack_folder, exact=True).click()
        self.page.get_by_test_id("template-workflows-content").wait_for()

    def open_template(self, template: Path) -> None:
        self.open_template_dialog()
        self.page.get_by_test_id(f"template-workflow-{template.stem}").click()
        expected = [[node["id"], node["type"]] for node in json.loads(template.read_text())["nodes"]]
        self.page.wait_for_function(JS_HAS_NODES, arg=expected, timeout=30_000)
        self.fit_view()

    def fit_view(self) -> None:
        """Press "." on the canvas: the editor's shortcut to fit the whole graph in view."""
        self.page.locator("#graph-canvas").focus()
        self.page.keyboard.press(".")
        self.wait_for_still_view()

    def wait_for_still_view(self) -> None:
        """Wait until the canvas stops panning and zooming (fitting the view is animated), so that
        widget positions computed now are where a click lands."""
        previous = None
        for _ in range(100):
            current = self.page.evaluate("() => [...app.canvas.ds.offset, app.canvas.ds.scale]")
            if current == previous:
                return
            previous = current
            self.page.wait_for_timeout(100)

    def pick_combo(self, node_id: str, widget: str, value: str) -> None:
        """Click a combo widget on the canvas and choose ``value`` from the menu it opens."""
        self.wait_for_still_view()
        x, y = self.page.evaluate(JS_WIDGET_CENTRE, [int(node_id), widget])
        self.page.mouse.click(x, y)
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        menu = self.page.locator(".litecontextmenu")
        try:
            menu.wait_for(timeout=10_000)
        except PlaywrightTimeout:
            self.screenshot(f"menu-of-{node_id}-{widget}-did-not-open")
            raise AssertionError(f"clicking widget {widget} of node {node_id} at ({x:.0f}, {y:.0f}) opened no menu")
        menu.locator(".litemenu-entry", has_text=value).first.click()

    def set_widget(self, node_id: str, widget: str, value) -> None:
        self.page.evaluate(JS_SET_WIDGET, [int(node_id), widget, value])

    def run(self) -> str:
        """Click Run; returns the prompt id ComfyUI answered with (the answer must accept the graph)."""
        with self.page.expect_response(
                lambda r: urlsplit(r.url).path == "/api/prompt" and r.request.method == "POST") as answer:
            self.page.get_by_test_id("queue-button").click()
        body = answer.value.json()
        assert answer.value.status == 200 and not body.get("node_errors"), \
            f"ComfyUI refused the graph the editor sent ({answer.value.status}): {json.dumps(body)[:3000]}"
        return body["prompt_id"]

    # ------------------------------------------------------------------ what the user sees
    def live_nodes(self) -> dict[str, dict]:
        return {node["id"]: node for node in self.page.evaluate(JS_LIVE_NODES)}

    def prompt(self) -> dict:
        """The API prompt the editor would send for the open graph (app.graphToPrompt)."""
        return self.page.evaluate(JS_PROMPT)

    def error_toasts(self) -> list[str]:
        return self.page.locator(".p-toast-message-error").all_inner_texts()

    def dialogs(self) -> list[str]:
        return [text.strip()[:500] for text in self.page.locator(".p-dialog:visible").all_inner_texts()]

    def screenshot(self, name: str) -> None:
        png = self.page.screenshot()
        for folder in self.screenshot_dirs:
            (folder / f"{name}.png").write_bytes(png)

    def problems(self) -> list[str]:
        """Console errors, error toasts and open dialogs: each would tell the user something failed."""
        return ([f"console: {e}" for e in self.console_errors] + [f"error toast: {t}" for t in self.error_toasts()]
                + [f"dialog: {d}" for d in self.dialogs()])


@pytest.fixture
def editor(browser, editor_server, screenshot_dirs):
    """A fresh browser context (no saved tabs or settings in the browser) on the editor."""
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    page.set_default_timeout(30_000)
    editor = Editor(page, editor_server, screenshot_dirs)
    editor.open()
    yield editor
    context.close()


def _shot_name(template: Path, step: str) -> str:
    return f"{template.stem.replace(' ', '_')}-{step}"


# ---------------------------------------------------------------------------------------- tests
def test_there_are_templates():
    assert TEMPLATES, "workflows/ holds no templates"


@pytest.mark.timeout(180)
def test_template_dialog_lists_every_template_cleanly(editor):
    """The pack's category lists one card per template file, with no console errors (e.g. a
    missing thumbnail is a 404 and a console error each time the dialog opens)."""
    editor.open_template_dialog()
    cards = editor.page.locator('[data-testid^="template-workflow-"]')
    cards.first.wait_for()
    editor.page.wait_for_timeout(1000)  # thumbnails load lazily once their cards are shown
    editor.screenshot("template-dialog")
    shown = sorted(t.removeprefix("template-workflow-") for t in
                   (cards.nth(i).get_attribute("data-testid") for i in range(cards.count())))
    assert shown == sorted(t.stem for t in TEMPLATES)
    assert not editor.console_errors, "console errors while the dialog is open:\n" + "\n".join(editor.console_errors)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.stem)
def test_template_opens_with_its_api_values(editor, template):
    twin = _twin(template)
    declared = _declared_inputs(editor.server)
    editor.open_template(template)
    editor.screenshot(_shot_name(template, "opened"))
    live = editor.live_nodes()

    missing = sorted(f"{n['id']}:{n['type']}" for n in live.values() if not n["registered"])
    assert not missing, f"node types the editor does not know: {missing}"

    wrong = []
    for node_id, api_node in twin.items():
        if not api_node["class_type"].startswith("Kubik"):
            continue
        node = live.get(node_id)
        assert node is not None, f"node {node_id} ({api_node['class_type']}) of the API twin is not in the graph"
        widgets = {w["name"]: w for w in node["widgets"]}
        for name, value in api_node["inputs"].items():
            if _is_link(value):
                continue
            if name not in widgets:
                wrong.append(f"{node_id} {api_node['class_type']}.{name}: no such widget (API value {value!r})")
            elif not _same(widgets[name]["value"], value):
                wrong.append(f"{node_id} {api_node['class_type']}.{name}: editor shows "
                             f"{widgets[name]['value']!r}, API twin has {value!r}")
        for name, widget in widgets.items():
            if name in declared[api_node["class_type"]] and widget["serialized"] \
                    and name not in node["linked"] and name not in api_node["inputs"]:
                wrong.append(f"{node_id} {api_node['class_type']}.{name}: editor shows {widget['value']!r}, "
                             "API twin has no value")
    assert not wrong, "Kubik widgets differ from the API twin:\n" + "\n".join(wrong)

    prompt = editor.prompt()
    assert sorted(prompt, key=int) == sorted(twin, key=int), "the editor would queue other nodes than the API twin"
    differences = []
    for node_id, api_node in twin.items():
        sent = prompt[node_id]
        if sent["class_type"] != api_node["class_type"]:
            differences.append(f"{node_id}: {sent['class_type']} instead of {api_node['class_type']}")
            continue
        # Inputs the node does not declare are the editor's own (e.g. PreviewAny's preview
        # widgets); ComfyUI ignores them.
        for name in sorted((set(sent["inputs"]) | set(api_node["inputs"])) & declared[api_node["class_type"]]):
            a, b = sent["inputs"].get(name, "<absent>"), api_node["inputs"].get(name, "<absent>")
            if not _same(a, b):
                differences.append(f"{node_id} {api_node['class_type']}.{name}: Run would send {a!r}, "
                                   f"API twin has {b!r}")
    assert not differences, "what Run would send differs from the API twin:\n" + "\n".join(differences)
    problems = editor.problems()
    assert not problems, "\n".join(problems)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.stem)
def test_template_runs_from_the_editor(editor, template, tiny_checkpoint, tiny_controlnet, tiny_encoder):
    twin = _twin(template)
    editor.open_template(template)
    samples = any(node["class_type"] == "KSampler" for node in twin.values())
    for node_id, node in twin.items():
        if node["class_type"] == "CheckpointLoaderSimple":
            editor.pick_combo(node_id, "ckpt_name", tiny_checkpoint.name)
        if node["class_type"] == "ControlNetLoader":
            editor.pick_combo(node_id, "control_net_name", tiny_controlnet.name)
        if node["class_type"] == "KubikConsistency":
            editor.pick_combo(node_id, "encoder", tiny_encoder.name)
        if node["class_type"] == "CLIPVisionLoader":
            editor.page.evaluate(JS_REMOVE_NODE, int(node_id))
        if node["class_type"] == "KubikParameterOptimizer" and samples:
            for name, value in QUICK_SAMPLING.items():
                editor.set_widget(node_id, name, value)
    prompt_id = editor.run()
    entry = editor.server.wait(prompt_id, timeout=540)
    status = entry["status"]
    errors = [m[1] for m in status.get("messages", []) if m[0] == "execution_error"]
    assert status.get("status_str") == "success" and not errors, json.dumps(errors or status)[:4000]

    outputs = entry["outputs"]
    expected = []
    for node_id, node in twin.items():
        kind = node["class_type"]
        if kind in IMAGE_NODES:
            expected.append((node_id, "images"))
        elif kind in TEXT_NODES:
            expected.append((node_id, "text"))
        elif kind in MESH_NODES:
            expected.append((node_id, "3d"))
    missing = [f"{node_id} {twin[node_id]['class_type']}: no {key}" for node_id, key in expected
               if not outputs.get(node_id, {}).get(key)]
    assert not missing, f"outputs missing from /history: {missing}; outputs: {json.dumps(outputs)[:3000]}"
    for node_id, node_outputs in outputs.items():
        for ref in (item for items in node_outputs.values() if isinstance(items, list)
                    for item in items if isinstance(item, dict) and "filename" in item):
            path = _output_path(editor.server, ref)
            assert path.is_file() and path.stat().st_size > 0, f"node {node_id} names {ref}, which is not there"
            if path.suffix == ".png":
                with Image.open(path) as image:
                    extrema = image.convert("L").getextrema()
                assert extrema[0] < extrema[1], f"{path.name} is one flat colour {extrema[0]} (NaNs decode so)"
            if twin[node_id]["class_type"] in MESH_NODES:
                assert path.read_bytes()[:4] == b"glTF", f"{path.name} is not a binary glTF"
    for node_id, key in expected:
        if key == "text":
            assert all(isinstance(t, str) and t.strip() for t in outputs[node_id]["text"]), outputs[node_id]

    # The results reached the editor (they show on their nodes) and nothing went wrong on screen.
    editor.page.wait_for_function(JS_HAS_OUTPUTS, arg=[node_id for node_id, _key in expected], timeout=30_000)
    editor.fit_view()
    editor.screenshot(_shot_name(template, "ran"))
    problems = editor.problems()
    assert not problems, "\n".join(problems)


def _output_path(server, ref: dict) -> Path:
    roots = {"output": server.output_dir, "temp": server.workdir / "temp", "input": server.input_dir}
    return roots[ref.get("type", "output")] / ref.get("subfolder", "") / ref["filename"]
