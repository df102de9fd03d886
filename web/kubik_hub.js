// Kubik hub: "Extensions > KubikAI > Download model..." in the top menu.
//
// Asks for a source (civitai:<version id>, hf:<owner>/<repo>/<file> or a URL) and a model kind,
// starts the download through POST /kubik/hub/download, and follows the websocket events
// kubik.hub.progress / kubik.hub.done / kubik.hub.error sent back to this client. Progress shows
// in a small status line at the bottom right; the end shows a toast. Press R afterwards to see
// the file in loaders.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const COMMAND_ID = "KubikAI.Hub.DownloadModel";
const jobs = new Map(); // job_id -> status element
const endedBeforeShown = new Set(); // small files can finish before the POST answer arrives

function toast(severity, summary, detail) {
  const toasts = app.extensionManager?.toast;
  if (toasts) toasts.add({ severity, summary, detail, life: severity === "error" ? 10000 : 5000 });
  else if (severity === "error") alert(`${summary}: ${detail}`);
}

function statusLine(jobId, label) {
  if (endedBeforeShown.delete(jobId)) return null;
  const line = document.createElement("div");
  Object.assign(line.style, {
    position: "fixed", right: "12px", bottom: `${12 + 26 * jobs.size}px`, zIndex: 1000,
    padding: "3px 8px", borderRadius: "4px", font: "12px sans-serif",
    background: "var(--comfy-menu-bg, #222)", color: "var(--fg-color, #ddd)",
  });
  line.textContent = `${label}: starting`;
  line.dataset.label = label;
  document.body.appendChild(line);
  jobs.set(jobId, line);
  return line;
}

function finish(jobId) {
  const line = jobs.get(jobId);
  if (!line) {
    endedBeforeShown.add(jobId);
    return;
  }
  line.remove();
  jobs.delete(jobId);
}

function megabytes(bytes) {
  return (bytes / 1048576).toFixed(1);
}

async function downloadModel() {
  const source = prompt("Model to download: civitai:<version id>, hf:<owner>/<repo>/<file>, or a URL");
  if (!source?.trim()) return;
  const kinds = (await (await api.fetchApi("/kubik/hub/kinds")).json()).kinds ?? ["loras"];
  const kind = prompt(`Model folder (${kinds.join(", ")})`, kinds[0]);
  if (!kind) return;
  if (!kinds.includes(kind.trim())) {
    toast("error", "Kubik download", `Unknown model folder '${kind}'`);
    return;
  }
  const sha256 = prompt("Expected SHA-256 (optional; CivitAI and Hugging Face files are verified anyway)", "");
  const response = await api.fetchApi("/kubik/hub/download", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      kind: kind.trim(), source: source.trim(), expected_sha256: sha256?.trim() || null,
      client_id: api.clientId,
    }),
  });
  const body = await response.json();
  if (!response.ok) {
    toast("error", "Kubik download", body.error ?? `HTTP ${response.status}`);
    return;
  }
  statusLine(body.job_id, source.trim());
}

api.addEventListener("kubik.hub.progress", ({ detail }) => {
  const line = jobs.get(detail.job_id);
  if (!line) return;
  const done = megabytes(detail.done);
  line.textContent = detail.total
    ? `${line.dataset.label}: ${Math.floor((100 * detail.done) / detail.total)}% of ${megabytes(detail.total)} MB`
    : `${line.dataset.label}: ${done} MB`;
});

// Warnings (e.g. a token pasted into the URL was hidden) come with the done and error events.
function warn(detail) {
  for (const warning of detail.warnings ?? []) toast("warn", "Kubik download", warning);
}

api.addEventListener("kubik.hub.done", ({ detail }) => {
  finish(detail.job_id);
  const state = detail.status === "already_present" ? "already present" : "downloaded";
  toast("success", `Kubik: ${detail.file_name} ${state}`, `in ${detail.kind}; press R to refresh loaders`);
  warn(detail);
});

api.addEventListener("kubik.hub.error", ({ detail }) => {
  finish(detail.job_id);
  toast("error", "Kubik download failed", detail.error);
  warn(detail);
});

app.registerExtension({
  name: "KubikAI.Hub",
  commands: [{ id: COMMAND_ID, label: "Download model...", function: downloadModel }],
  menuCommands: [{ path: ["Extensions", "KubikAI"], commands: [COMMAND_ID] }],
});
