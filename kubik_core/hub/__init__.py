"""kubik_core.hub: CivitAI and Hugging Face search, metadata and verified downloads.

``Hub`` (service.py) is the entry point: ``Hub().download("civitai:135867", folder)`` resolves
the source, downloads resumably into ``<name>.part``, checks the SHA-256 before the file gets
its name, and writes the sidecars the LoRA library reads. See README.md in this folder for
configuration (tokens, endpoints, private addresses, limits), sources, sidecar fields and the
``kubik hub`` commands.

The names below are imported on first use, so that ``kubik_core.hub.targets`` (which the pack's
nodes read at start-up) does not pull in the HTTP stack.
"""
from importlib import import_module

_EXPORTS = {
    "Hub": ".service", "HubConfig": ".config", "Secret": ".config",
    "HubError": ".errors", "HubAuthError": ".errors", "HubNotFound": ".errors",
    "HubRateLimited": ".errors", "HubUnavailable": ".errors", "HashMismatch": ".errors",
    "UnsafeFilename": ".errors", "FileConflict": ".errors", "SourceError": ".errors",
    "PrivateAddressRefused": ".netguard", "DownloadJobs": ".jobs", "JobPoolFull": ".jobs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
