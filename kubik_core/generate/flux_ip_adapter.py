"""XLabs-AI FLUX.1 IP-Adapters (flux-ip-adapter v1 and v2) for ``kubik generate``.

The files are single .safetensors as ComfyUI users keep them in models/ipadapter or
models/xlabs/ipadapters, in the layout of XLabs-AI/x-flux (src/flux/modules/layers.py):

- ``ip_adapter_proj_model.proj`` (Linear: CLIP ViT-L/14's 768-wide projected image embedding ->
  tokens x 4096, T5's width) and ``ip_adapter_proj_model.norm`` (LayerNorm over 4096): the
  ImageProjModel; v1 makes 4 image tokens, v2 16 (x-flux-comfyui's LoadFluxIPAdapter tells them
  apart by the same rows);
- ``double_blocks.<n>.processor.ip_adapter_double_stream_k_proj`` / ``_v_proj`` (weight
  [3072, 4096] and bias, FLUX's width from T5's) for each of the 19 double blocks.

They run through diffusers' FLUX IP-Adapter: its FluxIPAdapterAttnProcessor (the image tokens'
attention added to each double block's image stream, as x-flux's IPDoubleStreamBlockProcessor
does), its ImageProjection, and FluxPipeline's (FluxIPAdapterMixin) ip_adapter_image,
set_ip_adapter_scale and true CFG. The modules are built here from the header, not by
``load_ip_adapter``: that guesses 16 tokens only from FLUX.1's 65536 rows and would take any other
width for 4 tokens; here the token count, every width and the block count come from the header,
are checked against the FLUX transformer, then on the meta device against the modules, and the
tensors are loaded strictly. Nothing is downloaded: the CLIP vision encoder is the local folder
or file ip_adapter.py inspects.

XLabs samples with true CFG (a second pass per step with the negative prompt and a black
reference): x-flux's README example and XLabs' ComfyUI workflow use true_gs 3.5. diffusers'
true_cfg_scale is the same formula; unlike x-flux it applies from the first step (x-flux's
examples start at the second).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROJECTION = "ip_adapter_proj_model."
PROJECTION_KEYS = ("proj.weight", "proj.bias", "norm.weight", "norm.bias")
_BLOCK = re.compile(r"^double_blocks\.(\d+)\.processor\.ip_adapter_double_stream_([kv])_proj\.(weight|bias)$")
VERSIONS = {4: "v1", 16: "v2"}      # image tokens -> XLabs' release
TRUE_CFG = 3.5
TRUE_CFG_SOURCE = ("XLabs-AI/x-flux README, IP-Adapter example (--true_gs 3.5 --guidance 4) "
                   "https://github.com/XLabs-AI/x-flux; XLabs-AI/x-flux-comfyui workflows/ip_adapter_workflow.json "
                   "(XlabsSampler true_gs 3.5)")
MAX_TRUE_CFG = 10.0


class FluxIPAdapterError(ValueError):
    """An XLabs FLUX IP-Adapter kubik generate cannot use (one line)."""


@dataclass(frozen=True)
class FluxAdapterLayout:
    """What an XLabs FLUX IP-Adapter's header says."""

    name: str
    tokens: int            # image tokens the projection makes (4: v1, 16: v2)
    context_dim: int       # the width of the tokens: FLUX's T5 feature width (4096)
    hidden_dim: int        # FLUX's transformer width (3072)
    image_features: int    # the projected CLIP image embedding it reads (768: ViT-L/14)
    blocks: int            # double blocks with an IP attention (19)

    @property
    def kind(self) -> str:
        version = VERSIONS.get(self.tokens)
        return f"XLabs {version}" if version else f"XLabs layout, {self.tokens} image tokens"


def is_xlabs_layout(shapes: dict) -> bool:
    """Whether a header holds XLabs' FLUX IP-Adapter keys."""
    return any(k.startswith(PROJECTION) or _BLOCK.match(k) for k in shapes)


def inspect_flux_adapter(shapes: dict[str, tuple[int, ...]], name: str) -> FluxAdapterLayout:
    """The layout of an XLabs FLUX IP-Adapter from its header's ``shapes``; every tensor must be
    one of the layout's (strict), FluxIPAdapterError otherwise."""
    def bad(what: str) -> FluxIPAdapterError:
        return FluxIPAdapterError(f"--ip-adapter: {name}: {what}; give XLabs' flux-ip-adapter .safetensors "
                                  "(v1 or v2) as released")

    projection = {k[len(PROJECTION):]: s for k, s in shapes.items() if k.startswith(PROJECTION)}
    missing = [k for k in PROJECTION_KEYS if k not in projection]
    if missing:
        raise bad(f"no {PROJECTION}{missing[0]}")
    stray = sorted(k for k in shapes if not (k.startswith(PROJECTION) and k[len(PROJECTION):] in PROJECTION_KEYS)
                   and not _BLOCK.match(k))
    if stray:
        raise bad(f"{stray[0][:80]!r} is not part of the layout")
    norm, rows = projection["norm.weight"], projection["proj.weight"]
    if len(norm) != 1 or len(rows) != 2 or projection["norm.bias"] != norm or projection["proj.bias"] != rows[:1] \
            or not norm[0] or not rows[0] or not rows[1] or rows[0] % norm[0]:
        raise bad(f"its image projection's shapes do not fit together (proj {list(rows)}, norm {list(norm)})")
    context, tokens, features = norm[0], rows[0] // norm[0], rows[1]
    numbers: dict[int, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        match = _BLOCK.match(key)
        if match:
            numbers.setdefault(int(match.group(1)), {})[f"{match.group(2)}.{match.group(3)}"] = shape
    if not numbers:
        raise bad("no double_blocks.<n>.processor.ip_adapter_double_stream_k_proj.weight")
    first = numbers[min(numbers)].get("k.weight", ())
    hidden = first[0] if len(first) == 2 and first[0] else 0
    for number in range(max(numbers) + 1):
        block = numbers.get(number, {})
        expected = {"k.weight": (hidden, context), "k.bias": (hidden,), "v.weight": (hidden, context),
                    "v.bias": (hidden,)}
        wrong = next((k for k, shape in expected.items() if not hidden or block.get(k) != shape), None)
        if wrong is not None:
            which, kind = wrong.split(".")
            shape = f"[{hidden}, {context}]" if kind == "weight" else f"[{hidden}]"
            raise bad(f"double_blocks.{number}.processor.ip_adapter_double_stream_{which}_proj.{kind} is missing or "
                      f"not {shape if hidden else 'a 2-D weight'}")
    return FluxAdapterLayout(name, tokens, context, hidden, features, len(numbers))


def check_against_flux(layout: FluxAdapterLayout, config: dict) -> None:
    """The adapter fits the FLUX transformer whose diffusers ``config`` (checkpoints.flux.
    transformer_config) the checkpoint's header gives: widths and double-block count."""
    width = config["num_attention_heads"] * config["attention_head_dim"]
    context, blocks = config["joint_attention_dim"], config["num_layers"]
    if (layout.hidden_dim, layout.context_dim) != (width, context):
        raise FluxIPAdapterError(f"--ip-adapter: {layout.name} is for a FLUX model {layout.hidden_dim} wide reading "
                                 f"{layout.context_dim}-wide T5 features but this one is {width} wide with {context}; "
                                 "give an IP-Adapter trained for this FLUX.1 model")
    if layout.blocks != blocks:
        raise FluxIPAdapterError(f"--ip-adapter: {layout.name} has IP attention for {layout.blocks} double blocks but "
                                 f"the FLUX model has {blocks}; give an IP-Adapter trained for this FLUX.1 model")


def check_encoder(layout: FluxAdapterLayout, encoder) -> None:
    """The CLIP vision encoder (ip_adapter.EncoderLayout) gives the projected embedding it reads."""
    if encoder.projection_dim != layout.image_features:
        raise FluxIPAdapterError(f"--image-encoder: {encoder.name} gives {encoder.projection_dim}-wide projected image "
                                 f"embeddings but {layout.name} reads {layout.image_features}; give CLIP ViT-L/14 "
                                 "(openai/clip-vit-large-patch14's model.safetensors or ComfyUI's clip_vision ViT-L)")


def check_true_cfg(value: float | None) -> None:
    """--true-cfg within 1 (off) .. MAX_TRUE_CFG (x-flux's examples use 3-4)."""
    if value is not None and not 1 <= value <= MAX_TRUE_CFG:
        raise FluxIPAdapterError(f"--true-cfg: {value:g}; give 1 (off) to {MAX_TRUE_CFG:g}")


def _modules(layout: FluxAdapterLayout, weight: float):
    """diffusers' modules for the adapter, named as adapter_state() names the file's tensors:
    ``image_proj`` (ImageProjection) and ``blocks.<n>`` (FluxIPAdapterAttnProcessor)."""
    import torch
    from diffusers.models.embeddings import ImageProjection
    from diffusers.models.transformers.transformer_flux import FluxIPAdapterAttnProcessor

    return torch.nn.ModuleDict({
        "image_proj": ImageProjection(image_embed_dim=layout.image_features, cross_attention_dim=layout.context_dim,
                                      num_image_text_embeds=layout.tokens),
        "blocks": torch.nn.ModuleList(FluxIPAdapterAttnProcessor(layout.hidden_dim, layout.context_dim,
                                                                 num_tokens=(layout.tokens,), scale=weight)
                                      for _ in range(layout.blocks))})


def _module_name(key: str) -> str:
    """The _modules() name of one of the file's tensors."""
    if key.startswith(PROJECTION):
        rest = key[len(PROJECTION):]
        return "image_proj." + ("image_embeds." + rest[len("proj."):] if rest.startswith("proj.") else rest)
    number, which, kind = _BLOCK.match(key).groups()
    return f"blocks.{number}.to_{which}_ip.0.{kind}"


def attach(pipe, adapter_path: str | os.PathLike, layout: FluxAdapterLayout, image_encoder, image_size: int,
           weight: float) -> None:
    """Load the adapter into the FLUX pipeline ``pipe`` (FluxPipeline or FluxControlNetPipeline)
    with its CLIP vision encoder (a loaded model) at ``weight``: checked on the meta device,
    loaded strictly, then handed to the transformer as diffusers' own loader would."""
    import torch
    from diffusers.models.embeddings import MultiIPAdapterImageProjection
    from transformers import CLIPImageProcessor

    from ..common.safetensors_file import SafetensorsFileError, load_tensors, read_header
    from ..common.weights import WeightsFileError, check_matches

    name = Path(adapter_path).name
    with torch.device("meta"):
        probe = _modules(layout, weight)
    try:
        header = read_header(adapter_path, name).tensors
        check_matches(probe, {_module_name(k): tuple(shape) for k, (_, shape) in header.items()}, name)
        tensors = load_tensors(adapter_path, name)
    except (SafetensorsFileError, WeightsFileError) as exc:
        raise FluxIPAdapterError(f"--ip-adapter: {exc}") from None
    state = {_module_name(k): v for k, v in tensors.items()}
    transformer = pipe.transformer
    modules = _modules(layout, weight)
    modules.load_state_dict(state, strict=True)
    modules.to(dtype=transformer.dtype)
    processors = dict(transformer.attn_processors)
    double = [n for n in processors if n.startswith("transformer_blocks.")]
    for number, processor_name in enumerate(double):
        processors[processor_name] = modules["blocks"][number]
    transformer.set_attn_processor(processors)
    transformer.encoder_hid_proj = MultiIPAdapterImageProjection([modules["image_proj"]])
    transformer.config.encoder_hid_dim_type = "ip_image_proj"      # as diffusers' loader marks it
    pipe.register_modules(image_encoder=image_encoder,
                          feature_extractor=CLIPImageProcessor(size={"shortest_edge": image_size},
                                                               crop_size={"height": image_size, "width": image_size}))
    pipe.set_ip_adapter_scale(weight)
