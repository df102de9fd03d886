"""web/kubik_explain.js run under Node against a minimal stand-in of the ComfyUI frontend.

The stand-in provides what the extension touches: ``app.registerExtension`` (scripts/app.js),
a node type whose prototype gets ``onExecuted``, and a node with ``addDOMWidget`` /
``computeSize`` / ``setSize``. Skipped when Node.js is not installed.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from kubik_testing.pack import REPO

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")

APP_STUB = """
export const registered = [];
export const app = { registerExtension(ext) { registered.push(ext); } };
"""

RUNNER = """
import { registered } from "../../scripts/app.js";
globalThis.document = { createElement: (tag) => ({ tag, value: "", style: {}, readOnly: false }) };
globalThis.requestAnimationFrame = (fn) => fn();
await import("./kubik_explain.js");

const ext = registered[0];
const results = { name: ext.name };
class Other { }
await ext.beforeRegisterNodeDef(Other, { name: "KSampler" });
results.otherTouched = "onExecuted" in Other.prototype;

let chained = 0;
class Explain { onExecuted() { chained += 1; } }
await ext.beforeRegisterNodeDef(Explain, { name: "KubikExplain" });
const node = Object.assign(Object.create(Explain.prototype), {
  widgets: [], size: [200, 100],
  addDOMWidget(name, type, element, options) {
    const widget = { name, type, element, options,
      get value() { return options.getValue(); }, set value(v) { options.setValue(v); } };
    this.widgets.push(widget);
    return widget;
  },
  computeSize() { return [300, 180]; },
  setSize(size) { this.size = size; },
});
node.onExecuted({ text: ["first explanation"] });
node.onExecuted({ text: ["line one", "line two"] });
const widget = node.widgets[0];
Object.assign(results, {
  widgets: node.widgets.length, value: widget.value, readOnly: widget.element.readOnly,
  serialize: widget.options.serialize, chained, size: node.size,
});
class Feedback { }
await ext.beforeRegisterNodeDef(Feedback, { name: "KubikFeedback" });
results.feedbackTouched = "onExecuted" in Feedback.prototype;
console.log(JSON.stringify(results));
"""


def test_explanation_text_shows_on_the_node(tmp_path):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "app.js").write_text(APP_STUB)
    ext_dir = tmp_path / "extensions" / "KubikAI"
    ext_dir.mkdir(parents=True)
    shutil.copy(REPO / "web" / "kubik_explain.js", ext_dir / "kubik_explain.js")
    (ext_dir / "run.mjs").write_text(RUNNER)
    (tmp_path / "package.json").write_text('{"type": "module"}')
    out = subprocess.run([NODE, str(ext_dir / "run.mjs")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["name"] == "KubikAI.Explain" and result["otherTouched"] is False
    assert result["widgets"] == 1  # reused on the second run
    assert result["value"] == "line one\nline two"
    assert result["readOnly"] is True and result["serialize"] is False
    assert result["chained"] == 2  # the original onExecuted still runs
    assert result["size"] == [300, 180]
    assert result["feedbackTouched"] is True  # other Kubik nodes that report text show it too
