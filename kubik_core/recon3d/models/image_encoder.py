"""Image encoder for the flow model: a timm backbone whose feature tokens the flow cross-attends to.

The backbone is named in the config (``image_encoder.backbone`` + ``backbone_kwargs``, checked by
:mod:`.config`'s schema) and built without reaching any file or the network: the name must
be one of timm's built-in architectures. Pretrained weights come only from a local safetensors
file the user names (``kubik 3d train-flow --image-encoder-weights``, e.g. a timm/HF
``model.safetensors``) through :meth:`ImageEncoder.load_pretrained`, never from the config. ViTs
give their token sequence (class token included), CNNs their last feature map flattened to tokens.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .config import ImageEncoderConfig


class ImageEncoder(nn.Module):
    def __init__(self, config: ImageEncoderConfig):
        super().__init__()
        import timm

        self.config = config
        self.image_size = config.image_size
        name = config.backbone
        kwargs = config.backbone_kwargs.to_dict()
        if ":" in name or "/" in name or not timm.is_model(name):
            raise ValueError(f"image encoder backbone {name[:100]!r} is not one of timm's built-in "
                             "architectures (see timm.list_models()); hub and file names are not accepted")
        try:
            self.backbone = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ValueError(f"cannot build image encoder {name!r} with {kwargs}: {exc}") from exc
        data = self.backbone.pretrained_cfg
        self.register_buffer("mean", torch.tensor(data.get("mean", (0.5, 0.5, 0.5))).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(data.get("std", (0.5, 0.5, 0.5))).view(1, 3, 1, 1),
                             persistent=False)
        with torch.no_grad():
            probe = self.tokens(torch.zeros(1, 3, self.image_size, self.image_size))
        self.token_count, self.width = probe.shape[1], probe.shape[2]

    def load_pretrained(self, path: str | Path) -> list[str]:
        """Load backbone weights from a local safetensors file; returns the keys it lacked."""
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"image encoder weights {path} do not exist")
        try:
            state = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise ValueError(f"image encoder weights {path} are not a readable safetensors file: {exc}") from exc
        own = self.backbone.state_dict()
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not usable:
            raise ValueError(f"{path} holds no weights for backbone {self.config.backbone!r} "
                             "(no key with a matching name and shape)")
        self.backbone.load_state_dict(usable, strict=False)
        return sorted(set(own) - set(usable))

    def tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels [B, 3, S, S] in 0..1 -> tokens [B, L, width]."""
        features = self.backbone.forward_features((pixels - self.mean) / self.std)
        if features.ndim == 4:  # CNN feature map [B, C, H, W]
            features = features.flatten(2).transpose(1, 2)
        return features

    forward = tokens
