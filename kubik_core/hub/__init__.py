"""kubik_core.hub: CivitAI and Hugging Face search, metadata and verified downloads.

``Hub`` (service.py) is the entry point: ``Hub().download("civitai:135867", folder)`` resolves
the source, downloads resumably into ``<name>.part``, checks the SHA-256 before the file gets
its name, and writes the sidecars the LoRA library reads. See README.md in this folder for
configuration (tokens, endpoints), sources, sidecar fields and the ``kubik hub`` commands.
"""
from .config import HubConfig, Secret
from .errors import (FileConflict, HashMismatch, HubAuthError, HubError, HubNotFound,
                     HubRateLimited, HubUnavailable, SourceError, UnsafeFilename)
from .service import Hub

__all__ = ["Hub", "HubConfig", "Secret", "HubError", "HubAuthError", "HubNotFound",
           "HubRateLimited", "HubUnavailable", "HashMismatch", "UnsafeFilename", "FileConflict",
           "SourceError"]
