"""Kubik Model Download: a verified model download from CivitAI, Hugging Face or a URL.

The engine is ``kubik_core.hub``. The node downloads only when it runs (the user queued it);
inside ComfyUI the file lands in the model folder of the chosen kind (model folders only, model
file types only: ``kubik_core.hub.targets``) and loaders list it after a refresh. The web UI's
``/kubik/hub/...`` routes live in ``nodes/routes.py``.
"""
from __future__ import annotations

from . import comfy_bridge

CATEGORY = "KubikAI/hub"


def _input_error(exc: Exception, source: str, kind: str, folder: str) -> Exception:
    """Re-word a hub error as one line naming the node input at fault, without server paths."""
    from ..kubik_core.hub.errors import UnsafeFilename
    from ..kubik_core.hub.jobs import describe_error, scrub_paths
    from ..kubik_core.hub.netguard import PrivateAddressRefused
    from ..kubik_core.hub.sources import shown_source

    message = scrub_paths(describe_error(exc, shown_source(source)[0]), folder, kind)
    if isinstance(exc, (ValueError, UnsafeFilename, PrivateAddressRefused)):
        return ValueError(message)     # an input is at fault
    return RuntimeError(message)       # the hub, the network or the folder


def _percent_progress(bar):
    """A download progress callback that moves a ComfyUI ProgressBar (0..100) per percent."""
    last = [-1]

    def progress(done: int, total: int | None) -> None:
        if total:
            percent = min(100, done * 100 // total)
            if percent != last[0]:
                last[0] = percent
                bar.update_absolute(percent, 100)

    return progress


class KubikModelDownload:
    DESCRIPTION = ("Downloads a model from CivitAI (civitai:<version id> or a model page URL), "
                   "Hugging Face (hf:<owner>/<repo>/<file>) or a plain URL into a ComfyUI model "
                   "folder. The file is resumable, verified by SHA-256 before it appears, never "
                   "overwrites a different file, and gets sidecars (trigger words, base model, "
                   "preview) for the LoRA library. Runs only when queued; refresh (R) to see the "
                   "file in loaders. Tokens: CIVITAI_API_TOKEN, HF_TOKEN. Plain URLs on "
                   "loopback/LAN addresses need KUBIK_HUB_ALLOW_PRIVATE=1.")
    CATEGORY = CATEGORY
    FUNCTION = "download"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("file_name", "sha256")
    OUTPUT_TOOLTIPS = (
        "The downloaded file's name as ComfyUI's loaders list it (relative to the model folder).",
        "SHA-256 of the file on disk, verified against the hub's (or your) hash when one is known.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        kinds = comfy_bridge.model_folder_kinds()
        return {
            "required": {
                "kind": (kinds, {"default": "loras" if "loras" in kinds else kinds[0],
                                 "tooltip": "Which ComfyUI model folder to download into "
                                            "(loras, checkpoints, embeddings, controlnet, vae ...)."}),
                "source": ("STRING", {"default": "", "multiline": False,
                                      "tooltip": "civitai:<version id>, a civitai.com model URL, "
                                                 "hf:<owner>/<repo>/<path/to/file>, a huggingface.co "
                                                 "resolve URL, or any https:// URL."}),
            },
            "optional": {
                "expected_sha256": ("STRING", {"default": "",
                                               "tooltip": "Optional SHA-256 the file must have "
                                                          "(64 hex digits). CivitAI and Hugging Face "
                                                          "LFS files are verified without it."}),
                "file_name": ("STRING", {"default": "",
                                         "tooltip": "Optional name to save as (default: the hub's "
                                                    "file name, made safe); it must end in one of "
                                                    "the folder's model file types."}),
            },
        }

    def download(self, kind, source, expected_sha256="", file_name=""):
        from ..kubik_core.hub.errors import HubError
        from ..kubik_core.hub.service import Hub

        folder = comfy_bridge.model_folder(kind)
        if folder is None:
            raise RuntimeError("kind: ComfyUI's model folders are not available (the pack is not "
                               "running inside ComfyUI); outside it use `kubik hub download SOURCE "
                               "--dest FOLDER`")
        target, extensions = folder
        if not source.strip():
            raise ValueError("source: empty; give civitai:<version id>, hf:<owner>/<repo>/<file> "
                             "or an https:// URL")
        bar = comfy_bridge.progress_bar(100)
        try:
            with Hub() as hub:
                record = hub.download(source.strip(), target, expected_sha256=expected_sha256 or None,
                                      filename=file_name.strip() or None, kind=kind,
                                      allowed_extensions=extensions,
                                      progress=_percent_progress(bar),
                                      check_cancel=comfy_bridge.check_interrupt)
        except (HubError, ValueError) as exc:
            raise _input_error(exc, source.strip(), kind, target) from None
        return (record["file_name"], record["sha256"])


NODE_CLASS_MAPPINGS = {"KubikModelDownload": KubikModelDownload}
NODE_DISPLAY_NAME_MAPPINGS = {"KubikModelDownload": "Kubik Model Download"}
