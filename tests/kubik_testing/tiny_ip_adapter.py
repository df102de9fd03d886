"""Tiny random-weight IP-Adapter files for the tiny SD1.5 and SDXL checkpoints (tiny_checkpoint.py),
in the layout of tencent-ailab/IP-Adapter's released .safetensors files (as ComfyUI users keep
them in models/ipadapter), for the tiny FLUX.1 (tiny_flux.py) in XLabs-AI's layout
(write_tiny_xlabs_ip_adapter, described there) and for the tiny SD3.5 Large (tiny_sd3.py) in
InstantX's (write_tiny_instantx_sd3_ip_adapter, described there). The SD layout:

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


def write_tiny_instantx_sd3_ip_adapter(path: str | Path, sd3_file: str | Path, image_features: int, tokens: int = 4,
                                       depth: int = 1, resampler: int = 64, timestep_features: int = 32,
                                       seed: int = 0, width: int | None = None, blocks: int | None = None) -> Path:
    """InstantX's SD3.5-Large-IP-Adapter layout for the MMDiT in ``sd3_file`` (its width and
    attention count read from the header): ``.bin`` paths are written as the release is, a torch
    zip file with the dictionaries ``image_proj`` and ``ip_adapter``; ``.safetensors`` paths as its
    conversion (``image_proj.<name>``, ``ip_adapter.<name>``). The names are InstantX's own:

    - ``image_proj``: the TimeResampler (heads of 64): ``latents`` [1, tokens, resampler],
      ``proj_in`` (image_features -> resampler), ``proj_out`` (resampler -> MMDiT width),
      ``norm_out``, ``time_embedding.linear_1|2``, and per layer ``layers.<i>.0.norm1|norm2|to_q|
      to_kv|to_out`` (attention, no biases), ``layers.<i>.1.0|1.1|1.3`` (LayerNorm, feed-forward x4,
      no biases) and ``layers.<i>.2.1`` (the time AdaLN's Linear to 4 x resampler);
    - ``ip_adapter.<n>`` per attention: ``norm_ip.linear`` (resampler -> 2 x width), ``to_k_ip`` and
      ``to_v_ip`` (width -> width, no bias), ``norm_q``, ``norm_k``, ``norm_ip_k`` (64).

    ``width`` and ``blocks`` replace the header's values (a file for another MMDiT). Values are
    seeded N(0, 1/fan_in), norms 1, so weight 1 visibly changes a picture."""
    import torch
    from safetensors import safe_open

    with safe_open(str(sd3_file), framework="pt") as handle:
        keys = [k.removeprefix("model.diffusion_model.") for k in handle.keys()]
        mmdit_width = handle.get_slice("model.diffusion_model.x_embedder.proj.weight").get_shape()[0]
    width = width or mmdit_width
    joint = [k for k in keys if k.startswith("joint_blocks.")]
    blocks = blocks or len({k.split(".")[1] for k in joint}) + sum(k.endswith("x_block.attn2.qkv.weight") for k in joint)
    generator = torch.Generator().manual_seed(seed)

    def lecun(*shape: int):
        return torch.randn(*shape, generator=generator) / shape[-1] ** 0.5

    def norm(size: int, prefix: str) -> dict:
        return {f"{prefix}.weight": torch.ones(size), f"{prefix}.bias": torch.zeros(size)}

    projection = {"latents": lecun(1, tokens, resampler), "proj_in.weight": lecun(resampler, image_features),
                  "proj_in.bias": lecun(resampler), "proj_out.weight": lecun(width, resampler),
                  "proj_out.bias": lecun(width), **norm(width, "norm_out"),
                  "time_embedding.linear_1.weight": lecun(resampler, timestep_features),
                  "time_embedding.linear_1.bias": lecun(resampler),
                  "time_embedding.linear_2.weight": lecun(resampler, resampler),
                  "time_embedding.linear_2.bias": lecun(resampler)}
    for layer in range(depth):
        stem = f"layers.{layer}"
        projection.update({**norm(resampler, f"{stem}.0.norm1"), **norm(resampler, f"{stem}.0.norm2"),
                           f"{stem}.0.to_q.weight": lecun(resampler, resampler),
                           f"{stem}.0.to_kv.weight": lecun(2 * resampler, resampler),
                           f"{stem}.0.to_out.weight": lecun(resampler, resampler),
                           **norm(resampler, f"{stem}.1.0"), f"{stem}.1.1.weight": lecun(4 * resampler, resampler),
                           f"{stem}.1.3.weight": lecun(resampler, 4 * resampler),
                           f"{stem}.2.1.weight": lecun(4 * resampler, resampler),
                           f"{stem}.2.1.bias": lecun(4 * resampler)})
    attention = {}
    for number in range(blocks):
        attention.update({f"{number}.norm_ip.linear.weight": lecun(2 * width, resampler),
                          f"{number}.norm_ip.linear.bias": lecun(2 * width),
                          f"{number}.to_k_ip.weight": lecun(width, width),
                          f"{number}.to_v_ip.weight": lecun(width, width),
                          **{f"{number}.{name}.weight": torch.ones(64) for name in ("norm_q", "norm_k", "norm_ip_k")}})
    return _save_instantx(path, projection, attention)


def write_tiny_instantx_flux_ip_adapter(path: str | Path, flux_file: str | Path, image_features: int,
                                        tokens: int = 4, seed: int = 0, width: int | None = None,
                                        blocks: int | None = None) -> Path:
    """InstantX's FLUX.1-dev-IP-Adapter layout for the FLUX transformer in ``flux_file`` (widths and
    block counts from its header, with or without ``model.diffusion_model.``); ``.bin`` paths as the
    release (a torch zip file with ``image_proj`` and ``ip_adapter``), others as .safetensors:

    - ``image_proj``: ``proj.0`` (Linear image_features -> 2 x image_features), ``proj.2`` (Linear
      -> tokens x T5 width), ``norm`` (LayerNorm over the T5 width);
    - ``ip_adapter.<n>.to_k_ip`` / ``to_v_ip`` (T5 width -> FLUX width, no bias) for every double,
      then every single block, numbered from 0.

    ``width`` and ``blocks`` replace the header's values. Seeded N(0, 1/fan_in) values."""
    import torch
    from safetensors import safe_open

    with safe_open(str(flux_file), framework="pt") as handle:
        shapes = {k.removeprefix("model.diffusion_model."): tuple(handle.get_slice(k).get_shape())
                  for k in handle.keys()}
    context, width = shapes["txt_in.weight"][1], width or shapes["img_in.weight"][0]
    blocks = blocks or sum(len({k.split(".")[1] for k in shapes if k.startswith(f"{kind}.")})
                           for kind in ("double_blocks", "single_blocks"))
    generator = torch.Generator().manual_seed(seed)

    def lecun(*shape: int):
        return torch.randn(*shape, generator=generator) / shape[-1] ** 0.5

    projection = {"proj.0.weight": lecun(2 * image_features, image_features), "proj.0.bias": lecun(2 * image_features),
                  "proj.2.weight": lecun(tokens * context, 2 * image_features), "proj.2.bias": lecun(tokens * context),
                  "norm.weight": torch.ones(context), "norm.bias": torch.zeros(context)}
    attention = {f"{number}.to_{which}_ip.weight": lecun(width, context) for number in range(blocks) for which in "kv"}
    return _save_instantx(path, projection, attention)


def _save_instantx(path: str | Path, projection: dict, attention: dict) -> Path:
    """InstantX's two dictionaries as released (``.bin``: a torch zip file holding ``image_proj`` and
    ``ip_adapter``) or, for any other suffix, as their .safetensors conversion (prefixed keys)."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".bin":
        torch.save({"image_proj": projection, "ip_adapter": attention}, str(path))
    else:
        save_file({**{f"image_proj.{k}": v for k, v in projection.items()},
                   **{f"ip_adapter.{k}": v for k, v in attention.items()}}, str(path))
    return path
