"""InstantX's FLUX.1-dev IP-Adapter (InstantX/FLUX.1-dev-IP-Adapter) for ``kubik generate``.

Released, like InstantX's SD3.5 adapter, as ``ip-adapter.bin`` holding two dictionaries (read by
sd3_ip_adapter.read_shapes: a zip torch file through torch.load(weights_only=True), or its
.safetensors conversion with ``image_proj.*`` / ``ip_adapter.*`` keys). The layout, from
InstantX's own files (infer_flux_ipa_siglip.py, attention_processor.py on the model page):

- ``image_proj``: an MLP from SigLIP so400m's pooled embedding (the attention-pooling head's
  output, 1152 wide) to 128 image tokens as wide as T5 (4096): ``proj.0`` (Linear 1152 -> 2304),
  GELU, ``proj.2`` (Linear 2304 -> 128 x 4096), then ``norm`` (LayerNorm over 4096);
- ``ip_adapter.<n>.to_k_ip`` / ``to_v_ip`` (Linear 4096 -> 3072, no bias) for each attention of the
  transformer in diffusers' order: the 19 double blocks, then the 38 single blocks.

There is no diffusers loader for it, so the attention processor is written here. Each block runs
diffusers' own FluxAttnProcessor and adds ``scale`` x an attention of its image-stream queries
(after FLUX's q-norm, before the rotary embedding) over the image tokens' keys (RMS-normalised per
head, no weight) and values. In a double block the sum goes through the block's output
projection, as InstantX adds it before ``to_out``; the projection is linear, so its weight alone
is applied to the addition. In a single block, where text and image tokens form one sequence,
every token gets it, as in InstantX's code. The tokens are computed once per run on the CPU (the
encoder and MLP are small beside FLUX) and handed to every block.

Shakker-Labs' ComfyUI port (ComfyUI-IPAdapter-Flux) also RMS-normalises the values; InstantX's own
processor, followed here, normalises the keys only.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .adapter_common import EncoderLayout, IPAdapterError

PROJECTION, ATTENTION = "image_proj.", "ip_adapter."
FIX = "give InstantX's FLUX.1-dev-IP-Adapter ip-adapter.bin as released, or its .safetensors conversion"
_PROJECTION_KEYS = ("proj.0.weight", "proj.0.bias", "proj.2.weight", "proj.2.bias", "norm.weight", "norm.bias")
_BLOCK = re.compile(r"^ip_adapter\.(\d+)\.to_([kv])_ip\.weight$")
KEY_NORM_EPS = 1e-5        # InstantX's RMSNorm on the image keys


@dataclass(frozen=True)
class InstantXFluxLayout:
    """What an InstantX FLUX IP-Adapter's tensors say."""

    name: str
    tokens: int             # image tokens (128)
    image_features: int     # SigLIP's pooled embedding it reads (1152)
    context_dim: int        # the tokens' width: FLUX's T5 features (4096)
    width: int              # FLUX's transformer width (3072)
    blocks: int             # attentions with an IP part: double + single blocks (57)

    @property
    def kind(self) -> str:
        return f"InstantX FLUX, {self.tokens} image tokens"


def is_instantx_flux_layout(shapes: dict) -> bool:
    """InstantX's FLUX adapter: the two-layer MLP projection and IP blocks numbered from 0 (h94's
    files number their layers 1, 3, 5 ...; FaceID's MLP comes with LoRA layers)."""
    return f"{PROJECTION}proj.2.weight" in shapes and f"{PROJECTION}proj.3.weight" not in shapes and \
        f"{ATTENTION}0.to_k_ip.weight" in shapes and not any("lora" in k for k in shapes)


def inspect_instantx_flux(shapes: dict[str, tuple[int, ...]], name: str) -> InstantXFluxLayout:
    """The layout from the file's ``shapes``; every tensor must belong to it, each of its shape."""
    def bad(what: str) -> IPAdapterError:
        return IPAdapterError(f"--ip-adapter: {name}: {what}; {FIX}")

    projection = {k[len(PROJECTION):]: s for k, s in shapes.items() if k.startswith(PROJECTION)}
    missing = [k for k in _PROJECTION_KEYS if k not in projection]
    if missing:
        raise bad(f"no {PROJECTION}{missing[0]}")
    stray = sorted(k for k in shapes if not (k.startswith(PROJECTION) and k[len(PROJECTION):] in _PROJECTION_KEYS)
                   and not _BLOCK.match(k))
    if stray:
        raise bad(f"{stray[0][:80]!r} is not part of the layout")
    first, second, norm = projection["proj.0.weight"], projection["proj.2.weight"], projection["norm.weight"]
    if len(first) != 2 or len(second) != 2 or len(norm) != 1 or not all((*first, *second, *norm)) or \
            second[1] != first[0] or second[0] % norm[0] or projection["proj.0.bias"] != first[:1] or \
            projection["proj.2.bias"] != second[:1] or projection["norm.bias"] != norm:
        raise bad(f"its image projection's shapes do not fit together (proj.0 {list(first)}, proj.2 {list(second)}, "
                  f"norm {list(norm)})")
    context, tokens, features = norm[0], second[0] // norm[0], first[1]
    numbers: dict[int, dict[str, tuple[int, ...]]] = {}
    for key, shape in shapes.items():
        match = _BLOCK.match(key)
        if match:
            numbers.setdefault(int(match.group(1)), {})[match.group(2)] = shape
    if not numbers:
        raise bad("no ip_adapter.<n>.to_k_ip.weight")
    width = (numbers.get(0, {}).get("k") or (0,))[0]
    for number in range(max(numbers) + 1):
        if any(numbers.get(number, {}).get(which) != (width, context) for which in "kv"):
            raise bad(f"ip_adapter.{number}.to_k_ip/to_v_ip are missing or not [{width}, {context}]")
    return InstantXFluxLayout(name, tokens, features, context, width, len(numbers))


def check_against_flux(layout: InstantXFluxLayout, config: dict) -> None:
    """The adapter fits the FLUX transformer whose diffusers ``config`` the checkpoint's header
    gives: its width, T5 width and one IP block per double and single block."""
    width = config["num_attention_heads"] * config["attention_head_dim"]
    blocks = config["num_layers"] + config["num_single_layers"]
    if (layout.width, layout.context_dim) != (width, config["joint_attention_dim"]):
        raise IPAdapterError(f"--ip-adapter: {layout.name} is for a FLUX model {layout.width} wide reading "
                             f"{layout.context_dim}-wide T5 features but this one is {width} wide with "
                             f"{config['joint_attention_dim']}; give an IP-Adapter trained for this FLUX.1 model")
    if layout.blocks != blocks:
        raise IPAdapterError(f"--ip-adapter: {layout.name} has IP attention for {layout.blocks} blocks but the FLUX "
                             f"model has {config['num_layers']} double and {config['num_single_layers']} single "
                             "blocks; give an IP-Adapter trained for this FLUX.1 model")


def check_encoder(layout: InstantXFluxLayout, encoder: EncoderLayout, has_head: bool) -> None:
    """The SigLIP encoder gives the pooled embedding the projection reads."""
    if not has_head or encoder.hidden_size != layout.image_features:
        what = (f"{encoder.hidden_size}-wide pooled embeddings" if has_head else
                "no pooled embedding (no attention-pooling head, vision_model.head.*)")
        raise IPAdapterError(f"--image-encoder: {encoder.name} gives {what} but {layout.name} reads "
                             f"{layout.image_features}-wide ones; give google/siglip-so400m-patch14-384 (the encoder "
                             "InstantX trained it with)")


def _image_tokens_module(layout: InstantXFluxLayout):
    """InstantX's projection, named as its tensors: proj.0, (GELU), proj.2, norm."""
    import torch

    class ImageTokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            hidden = 2 * layout.image_features
            self.proj = torch.nn.Sequential(torch.nn.Linear(layout.image_features, hidden), torch.nn.GELU(),
                                            torch.nn.Linear(hidden, layout.tokens * layout.context_dim))
            self.norm = torch.nn.LayerNorm(layout.context_dim)

        def forward(self, pooled):
            return self.norm(self.proj(pooled).reshape(-1, layout.tokens, layout.context_dim))

    return ImageTokens()


class InstantXFluxAttnProcessor:
    """diffusers' FluxAttnProcessor plus the image tokens' attention at ``scale`` (module
    docstring); ``to_k_ip`` and ``to_v_ip`` live in ``self.layers``, the tokens in ``image_tokens``."""

    def __init__(self, layers, scale: float):
        from diffusers.models.transformers.transformer_flux import FluxAttnProcessor

        self.layers, self.scale, self.image_tokens = layers, scale, None
        self._attention = FluxAttnProcessor()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        import torch.nn.functional as F

        out = self._attention(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        if not self.scale or self.image_tokens is None:
            return out
        extra = self.scale * self._image_attention(attn, hidden_states)
        if encoder_hidden_states is None:       # single block: every token of the joint sequence
            return out + extra
        image, text = out                       # double block: added before the (linear) output projection
        return image + F.linear(extra, attn.to_out[0].weight), text

    def _image_attention(self, attn, hidden_states):
        import torch.nn.functional as F

        heads = (-1, attn.head_dim)
        query = attn.norm_q(attn.to_q(hidden_states).unflatten(-1, heads)).transpose(1, 2)
        tokens = self.image_tokens.to(device=hidden_states.device, dtype=hidden_states.dtype)
        tokens = tokens.expand(hidden_states.shape[0], -1, -1)
        key = self.layers.to_k_ip(tokens).unflatten(-1, heads)
        key = F.rms_norm(key, (attn.head_dim,), eps=KEY_NORM_EPS).transpose(1, 2)
        value = self.layers.to_v_ip(tokens).unflatten(-1, heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(query, key, value)
        return out.transpose(1, 2).flatten(2).to(hidden_states.dtype)


def _modules(layout: InstantXFluxLayout):
    """The adapter's weights as modules named like the file's tensors: ``image_proj`` and
    ``ip_adapter.<n>.to_k_ip|to_v_ip``."""
    import torch

    def block():
        layers = torch.nn.Module()
        layers.to_k_ip = torch.nn.Linear(layout.context_dim, layout.width, bias=False)
        layers.to_v_ip = torch.nn.Linear(layout.context_dim, layout.width, bias=False)
        return layers

    return torch.nn.ModuleDict({"image_proj": _image_tokens_module(layout),
                                "ip_adapter": torch.nn.ModuleList(block() for _ in range(layout.blocks))})


def check_modules(layout: InstantXFluxLayout, shapes: dict[str, tuple[int, ...]]) -> None:
    """Every tensor of the file against the modules the layout builds (on the meta device)."""
    import torch

    from ..common.weights import WeightsFileError, check_matches

    with torch.device("meta"):
        probe = _modules(layout)
    try:
        check_matches(probe, shapes, layout.name)
    except WeightsFileError as exc:
        raise IPAdapterError(f"--ip-adapter: {exc}; {FIX}") from None


def set_scale(pipe, weight: float) -> None:
    """The adapter's weight in every block of ``pipe``'s transformer."""
    for processor in pipe.transformer.attn_processors.values():
        if isinstance(processor, InstantXFluxAttnProcessor):
            processor.scale = weight


def attach(pipe, adapter_path: str | os.PathLike, layout: InstantXFluxLayout, encoder: EncoderLayout,
           weight: float, reference) -> None:
    """Load the adapter (checked by check_modules when planned) into the FLUX pipeline ``pipe``:
    its weights strictly, the reference picture's tokens computed once on the CPU (float32), one
    processor per attention of the transformer, at ``weight``."""
    import torch

    from .sd3_ip_adapter import read_tensors
    from .siglip_encoder import image_processor, load_siglip

    modules = _modules(layout)
    modules.load_state_dict({k: v.float() for k, v in read_tensors(adapter_path, FIX).items()}, strict=True)
    siglip = load_siglip(encoder)
    pixels = image_processor(encoder)(images=[reference], return_tensors="pt").pixel_values
    with torch.inference_mode():
        tokens = modules["image_proj"](siglip(pixels.float()).pooler_output)
    transformer = pipe.transformer
    layers = modules["ip_adapter"].to(dtype=transformer.dtype)
    transformer.kubik_ip_adapter = layers         # moved with the transformer (device, dtype, offload)
    processors = {}
    for number, processor_name in enumerate(transformer.attn_processors):   # 19 double, then 38 single
        processor = InstantXFluxAttnProcessor(layers[number], weight)
        processor.image_tokens = tokens
        processors[processor_name] = processor
    transformer.set_attn_processor(processors)
