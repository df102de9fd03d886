// Text on the node for Kubik nodes that report in words: Kubik Explain (the explanation),
// Kubik Classify Image (labels and scores), Kubik Feedback and Kubik Preset Picker.
//
// Each returns {"ui": {"text": [...]}}; ComfyUI passes that object to the node's onExecuted.
// We keep one read-only multiline text widget on the node and put the text in it.
// The widget is display-only (not serialized), so saved workflows keep just the node's own values.
import { app } from "../../scripts/app.js";

const TEXT_NODES = new Set(["KubikExplain", "KubikClassifyImage", "KubikFeedback", "KubikPresetPicker"]);
const WIDGET_NAME = "kubik_explanation";

function explanationWidget(node) {
  const existing = node.widgets?.find((w) => w.name === WIDGET_NAME);
  if (existing) return existing;
  const area = document.createElement("textarea");
  area.className = "comfy-multiline-input";
  area.readOnly = true;
  area.spellcheck = false;
  area.style.opacity = "0.9";
  const widget = node.addDOMWidget(WIDGET_NAME, "customtext", area, {
    getValue: () => area.value,
    setValue: (value) => {
      area.value = value;
    },
    serialize: false,
  });
  widget.inputEl = area;
  // options.serialize keeps the text out of the prompt; widget.serialize keeps it out of the
  // workflow's widgets_values, which the editor matches to inputs by position.
  widget.serialize = false;
  return widget;
}

function showText(node, text) {
  const widget = explanationWidget(node);
  widget.value = Array.isArray(text) ? text.join("\n") : String(text ?? "");
  requestAnimationFrame(() => {
    const wanted = node.computeSize();
    node.setSize([Math.max(wanted[0], node.size[0]), Math.max(wanted[1], node.size[1])]);
    node.setDirtyCanvas?.(true, true);
  });
}

app.registerExtension({
  name: "KubikAI.Explain",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!TEXT_NODES.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      if (message?.text) showText(this, message.text);
    };
  },
});
