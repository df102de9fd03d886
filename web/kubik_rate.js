// Rate what you see: stars, sub-ratings, tags and a note on Kubik Save Image, above the image.
//
// Kubik Save Image returns {"ui": {"images": [...], "kubik_generation_ids": [...]}}: one learning
// store id per saved image. This panel rates the image the node shows (the one clicked in a
// batch, else the first) through POST /kubik/learning/rating, without queueing anything; rating
// it again replaces its rating. When the node shows an image again (a cached run sends the same
// ids), the stored rating is read back with GET /kubik/learning/rating.
//
// The panel is display-only: `serialize = false` keeps it out of the workflow's widgets_values,
// and `options.serialize = false` keeps it out of the prompt, so saved workflows and templates
// are unchanged.
//
// Also here: a Kubik seed added from the node menu starts on "fixed" instead of the frontend's
// "randomize", so that queueing again re-uses the cached image instead of making a new one.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SAVE_NODE = "KubikSaveImage";
const WIDGET_NAME = "kubik_rating";
const SUB_RATINGS = ["quality", "accuracy", "aesthetic"];
const PANEL_HEIGHT = 190;
const FIXED_SEED_NODES = new Set(["KubikPromptAnalyzer", "KubikPresetPicker"]);

const STYLE = `
.kubik-rate { box-sizing: border-box; display: flex; flex-direction: column; gap: 3px;
  padding: 6px 6px 4px; font: 12px sans-serif; color: var(--input-text, #ddd);
  background: var(--comfy-input-bg, #222); border-radius: 6px; overflow: hidden; }
.kubik-rate > * { flex-shrink: 0; }
.kubik-rate-title { opacity: 0.8; line-height: 16px; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.kubik-rate-row { display: flex; align-items: center; gap: 4px; }
.kubik-rate-row > span:first-child { width: 64px; opacity: 0.8; }
.kubik-rate-stars button { background: none; border: none; padding: 0 1px; cursor: pointer;
  font-size: 16px; line-height: 16px; color: #777; }
.kubik-rate-row.kubik-rate-sub button { font-size: 13px; line-height: 13px; }
.kubik-rate-stars button.on { color: #f5c518; }
.kubik-rate-stars button:disabled { cursor: default; }
.kubik-rate input, .kubik-rate textarea { box-sizing: border-box; width: 100%; font: 12px sans-serif;
  color: inherit; background: var(--comfy-menu-bg, #333); border: 1px solid #555; border-radius: 4px;
  padding: 2px 4px; resize: none; }
.kubik-rate textarea { height: 30px; }
.kubik-rate-status { min-height: 16px; line-height: 16px; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.kubik-rate-status.error { color: #ff7070; }
`;

function addStyle() {
  if (document.getElementById("kubik-rate-style")) return;
  const style = document.createElement("style");
  style.id = "kubik-rate-style";
  style.textContent = STYLE;
  document.head.appendChild(style);
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text) el.textContent = text;
  return el;
}

/** One row of five star buttons; `onPick(value)` gets 1-5. */
function starRow(label, onPick, sub) {
  const row = element("div", `kubik-rate-row kubik-rate-stars${sub ? " kubik-rate-sub" : ""}`);
  row.appendChild(element("span", null, label));
  const buttons = [];
  for (let value = 1; value <= 5; value++) {
    const button = element("button", null, "\u2605");
    button.type = "button";
    button.title = `${label}: ${value} of 5`;
    button.dataset.value = String(value);
    button.addEventListener("click", () => onPick(value));
    row.appendChild(button);
    buttons.push(button);
  }
  return {
    row,
    show(value, enabled) {
      buttons.forEach((b, i) => {
        b.classList.toggle("on", i < (value ?? 0));
        b.disabled = !enabled;
      });
    },
  };
}

/** With "Nodes 2.0" (Vue nodes) a batch shows one image at a time with a dot per image; the
 * current dot is marked aria-current. Its position, or undefined on the classic canvas. */
function galleryIndex(node) {
  const nodeElement = document.querySelector(`[data-node-id="${CSS.escape(String(node.id))}"]`);
  const current = nodeElement?.querySelector('button[aria-current="true"]');
  return current ? [...current.parentElement.children].indexOf(current) : undefined;
}

/** The rating panel of one Kubik Save Image node. */
class RatingPanel {
  constructor(node) {
    this.node = node;
    this.ids = [];            // generation id per image, from the last execution
    this.generationId = null; // the image being rated
    this.rating = null;       // the stored rating of that image (the route's answer)
    this.request = 0;         // answers to older requests are ignored

    addStyle();
    this.root = element("div", "kubik-rate");
    this.title = element("div", "kubik-rate-title");
    this.overall = starRow("rating", (v) => this.pick("rating", v), false);
    this.subs = Object.fromEntries(
      SUB_RATINGS.map((name) => [name, starRow(name, (v) => this.pick(name, v), true)]),
    );
    this.tags = element("input");
    this.tags.placeholder = "tags, comma-separated";
    this.tags.maxLength = 3300;
    this.note = element("textarea");
    this.note.placeholder = "note";
    this.note.maxLength = 10000;
    this.status = element("div", "kubik-rate-status");
    for (const field of [this.tags, this.note]) {
      field.addEventListener("change", () => this.save());
      field.addEventListener("keydown", (event) => event.stopPropagation());
    }
    this.tags.addEventListener("keydown", (event) => {
      if (event.key === "Enter") this.tags.blur();
    });
    this.root.append(this.title, this.overall.row, ...SUB_RATINGS.map((n) => this.subs[n].row),
      this.tags, this.note, this.status);

    this.widget = node.addDOMWidget(WIDGET_NAME, "kubik-rating", this.root, {
      getValue: () => "",
      setValue: () => {},
      getMinHeight: () => PANEL_HEIGHT,
      getMaxHeight: () => PANEL_HEIGHT,
      serialize: false,
    });
    this.widget.serialize = false;
    this.followShownImage();
    this.show();
  }

  /** The image preview sets node.imageIndex when an image of a batch is clicked (and resets it
   * for new images); rate the image it shows from then on. */
  followShownImage() {
    let imageIndex = this.node.imageIndex ?? null;
    Object.defineProperty(this.node, "imageIndex", {
      configurable: true,
      enumerable: true,
      get: () => imageIndex,
      set: (value) => {
        imageIndex = value;
        queueMicrotask(() => this.select());
      },
    });
  }

  /** The image the node shows: the one picked in a batch, else the first. */
  shownIndex() {
    const index = galleryIndex(this.node) ?? this.node.imageIndex;
    return Number.isInteger(index) && index >= 0 && index < this.ids.length ? index : 0;
  }

  executed(ids) {
    this.ids = Array.isArray(ids) ? ids.filter((id) => typeof id === "string") : [];
    this.select(true);
  }

  /** Follow the shown image; read its stored rating when it changed (or `force`). */
  select(force = false) {
    const id = this.ids.length ? this.ids[this.shownIndex()] : null;
    if (!force && id === this.generationId) return;
    this.generationId = id;
    this.rating = null;
    this.tags.value = "";
    this.note.value = "";
    this.show();
    if (id) this.load(id);
  }

  async load(id) {
    const request = ++this.request;
    this.setStatus("reading the stored rating...");
    const { ok, body } = await this.call(`/kubik/learning/rating?generation_id=${encodeURIComponent(id)}`);
    if (request !== this.request || id !== this.generationId) return;
    if (!ok) return this.setStatus(body.error, true);
    this.rating = body.rating;
    this.tags.value = (body.rating?.tags ?? []).join(", ");
    this.note.value = body.rating?.comment ?? "";
    this.show();
  }

  pick(name, value) {
    if (!this.generationId) return;
    const current = { rating: null, quality: null, accuracy: null, aesthetic: null, ...this.rating };
    // Clicking the star a sub-rating already has clears it; the overall rating stays set.
    current[name] = name !== "rating" && current[name] === value ? null : value;
    this.rating = current;
    this.show();
    this.save();
  }

  async save() {
    const id = this.generationId;
    if (!id) return;
    if (!this.rating?.rating) return this.setStatus("choose 1-5 stars to save the rating");
    const request = ++this.request;
    const body = {
      generation_id: id,
      rating: this.rating.rating,
      quality: this.rating.quality ?? null,
      accuracy: this.rating.accuracy ?? null,
      aesthetic: this.rating.aesthetic ?? null,
      tags: this.tags.value.split(",").map((t) => t.trim()).filter(Boolean),
      comment: this.note.value,
      // Flags set by Kubik Feedback or an API client are kept as they are.
      saved: Boolean(this.rating.saved),
      shared: Boolean(this.rating.shared),
      regenerated: Boolean(this.rating.regenerated),
    };
    this.setStatus("saving...");
    const answer = await this.call("/kubik/learning/rating", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (request !== this.request || id !== this.generationId) return;
    if (!answer.ok) return this.setStatus(answer.body.error, true);
    this.rating = answer.body.rating;
    this.show();
  }

  async call(path, options) {
    try {
      const response = await api.fetchApi(path, options);
      const body = await response.json().catch(() => ({}));
      return { ok: response.ok, body: response.ok ? body : { error: body.error ?? `HTTP ${response.status}` } };
    } catch (error) {
      return { ok: false, body: { error: `the server did not answer (${error.message ?? error})` } };
    }
  }

  setStatus(text, isError = false) {
    this.status.textContent = text ?? "";
    this.status.classList.toggle("error", isError);
    this.status.title = text ?? "";
  }

  show() {
    const id = this.generationId;
    const count = this.ids.length;
    const enabled = Boolean(id);
    this.title.textContent = !id
      ? (this.executedWithoutIds ? "Saved without recording" : "Run the workflow to rate its image here")
      : count > 1
        ? `Image ${this.shownIndex() + 1} of ${count} (pick another to rate it)`
        : "Rate this image";
    this.overall.show(this.rating?.rating, enabled);
    for (const name of SUB_RATINGS) this.subs[name].show(this.rating?.[name], enabled);
    this.tags.disabled = this.note.disabled = !enabled;
    if (!id) {
      this.setStatus(this.executedWithoutIds ? "turn 'record' on to rate images" : "");
    } else if (this.rating?.rating) {
      this.setStatus(`rated ${this.rating.rating}/5 (saved in the learning store)`);
    } else {
      this.setStatus("not rated yet");
    }
  }
}

app.registerExtension({
  name: "KubikAI.Rate",
  setup() {
    // Nodes 2.0 galleries change their image on a click without telling the node: look again.
    document.addEventListener("click", () => setTimeout(() => {
      for (const node of app.canvas?.graph?.nodes ?? []) node.kubikRating?.select();
    }), true);
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (FIXED_SEED_NODES.has(nodeData.name)) {
      // Runs for new nodes only in effect: a loaded workflow's values are applied afterwards.
      const onNodeCreated = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const result = onNodeCreated?.apply(this, arguments);
        const control = this.widgets?.find((w) => w.name === "control_after_generate");
        if (control) control.value = "fixed";
        return result;
      };
    }
    if (nodeData.name !== SAVE_NODE) return;

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      this.kubikRating = new RatingPanel(this);
      return result;
    };

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const panel = this.kubikRating;
      if (!panel) return;
      panel.executedWithoutIds = Array.isArray(message?.images) && !message?.kubik_generation_ids?.length;
      panel.executed(message?.kubik_generation_ids);
    };

  },
});
