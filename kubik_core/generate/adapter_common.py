"""What the IP-Adapter modules share: their one-line error and the image encoder's layout.

ip_adapter.py (h94 and XLabs files) imports the adapter-family modules (sd3_ip_adapter.py,
siglip_encoder.py), so these live here rather than there, and no module imports its importer.
"""
from __future__ import annotations

from dataclasses import dataclass

MAX_CONFIG_BYTES = 1024 * 1024      # an image encoder's config.json


class IPAdapterError(ValueError):
    """An IP-Adapter, reference picture or image encoder kubik generate cannot use (one line)."""


@dataclass(frozen=True)
class EncoderLayout:
    """What a CLIP or SigLIP vision encoder's config (folder) or header (single file) says."""

    name: str
    path: str
    hidden_size: int
    projection_dim: int
    image_size: int
    single_file_config: dict | None = None    # the CLIPVisionConfig of a single file; SigLIP's always
