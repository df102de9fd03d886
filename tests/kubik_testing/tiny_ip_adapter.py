"""Tiny random-weight IP-Adapter files for the tiny SD1.5 and SDXL checkpoints (tiny_checkpoint.py),
in the layout of tencent-ailab/IP-Adapter's released .safetensors files (as ComfyUI users keep
them in models/ipadapter), and for the tiny FLUX.1 (tiny_flux.py) in XLabs-AI's layout
(write_tiny_xlabs_ip_adapter, described there). The SD layout:

- ``image_proj.proj`` (Linear: image embedding -> 4 tokens x the UNet's text width) and
  ``image_proj.norm`` (LayerNorm over that width): the "basic" ImageProjModel;
- ``ip_adapter.<n>.to_k_ip.weight`` / ``to_v_ip.weight`` ([UNet width, text width], no bias) for
  every cross-attention of the UNet, numbered as the training script numbers diffusers' attention
  processors (self-attentions even, cross-attentions odd: 1, 3, 5 ...).

The cross-attentions are counted in the checkpoint's own header (``attn2.to_k.weight`` of
``model.diffusion_model``); the tiny UNets are 320 channels wide at every level, so the order of
the widths cannot matter (checked). The image embedding width is the tiny CLIP vision encoder's
projection (tiny_vision.py). Values are seeded N(0, 1/fan_in), so weight 1 visibly changes a
picture.
"""
from __future__ import annotations

from pathlib import Path

TOKENS = 4


def write_tiny_ip_adapter(path: str | Path, checkpoint: str | Path, image_embed_dim: int, seed: int = 0) -> Path:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(checkpoint), framework="pt") as handle:
        cross = [tuple(handle.get_slice(k).get_shape()) for k in handle.keys()
                 if k.startswith("model.diffusion_model.") and k.endswith("attn2.to_k.weight")]
    widths = {shape[0] for shape in cross}
    text_widths = {shape[1] for shape in cross}
    assert cross and len(widths) == 1 and len(text_widths) == 1, (widths, text_widths)
    width, text = widths.pop(), text_widths.pop()
    generator = torch.Generator().manual_seed(seed)

    def lecun(rows: int, columns: int):
        return (torch.randn(rows, columns, generator=generator) / columns ** 0.5).to(torch.float16)

    tensors = {"image_proj.proj.weight": lecun(TOKENS * text, image_embed_dim),
               "image_proj.proj.bias": torch.zeros(TOKENS * text, dtype=torch.float16),
               "image_proj.norm.weight": torch.ones(text, dtype=torch.float16),
               "image_proj.norm.bias": torch.zeros(text, dtype=torch.float16)}
    for number in range(1, 2 * len(cross), 2):
        tensors[f"ip_adapter.{number}.to_k_ip.weight"] = lecun(width, text)
        tensors[f"ip_adapter.{number}.to_v_ip.weight"] = lecun(width, text)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"kubik.note": "KubikAI tiny random IP-Adapter"})
    return path


def write_tiny_xlabs_ip_adapter(path: str | Path, flux_file: str | Path, image_embed_dim: int, tokens: int = 4,
                                seed: int = 0, context: int | None = None, hidden: int | None = None,
                                blocks: int | None = None) -> Path:
    """An XLabs-AI flux-ip-adapter file (v1: 4 image tokens, v2: 16) for the FLUX transformer in
    ``flux_file`` (its widths and double-block count read from the header, with or without the
    ``model.diffusion_model.`` prefix), as x-flux saves it:

    - ``ip_adapter_proj_model.proj`` (Linear image_embed_dim -> tokens x T5 width) and
      ``ip_adapter_proj_model.norm`` (LayerNorm over the T5 width);
    - ``double_blocks.<n>.processor.ip_adapter_double_stream_k_proj`` / ``_v_proj`` (Linear T5 width
      -> FLUX width, with bias) for every double block.

    ``context``, ``hidden`` and ``blocks`` replace the header's values (a file for another FLUX).
    Values are seeded N(0, 1/fan_in), so weight 1 visibly changes a picture."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(flux_file), framework="pt") as handle:
        shapes = {k.removeprefix("model.diffusion_model."): tuple(handle.get_slice(k).get_shape())
                  for k in handle.keys()}
    context = context or shapes["txt_in.weight"][1]
    hidden = hidden or shapes["img_in.weight"][0]
    blocks = blocks or 1 + max(int(k.split(".")[1]) for k in shapes if k.startswith("double_blocks."))
    generator = torch.Generator().manual_seed(seed)

    def lecun(*shape: int):
        return (torch.randn(*shape, generator=generator) / shape[-1] ** 0.5).to(torch.bfloat16)

    tensors = {"ip_adapter_proj_model.proj.weight": lecun(tokens * context, image_embed_dim),
               "ip_adapter_proj_model.proj.bias": lecun(tokens * context),
               "ip_adapter_proj_model.norm.weight": torch.ones(context, dtype=torch.bfloat16),
               "ip_adapter_proj_model.norm.bias": torch.zeros(context, dtype=torch.bfloat16)}
    for number in range(blocks):
        for which in ("k", "v"):
            stem = f"double_blocks.{number}.processor.ip_adapter_double_stream_{which}_proj"
            tensors[f"{stem}.weight"] = lecun(hidden, context)
            tensors[f"{stem}.bias"] = lecun(hidden)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"kubik.note": "KubikAI tiny random XLabs FLUX IP-Adapter"})
    return path
