"""InstantX's SD3.5 Large IP-Adapter (InstantX/SD3.5-Large-IP-Adapter) for ``kubik generate``.

The file is released as ``ip-adapter.bin``: a torch zip file holding two dictionaries,
``image_proj`` and ``ip_adapter``; converted to .safetensors (as ComfyUI users may keep it in
models/ipadapter) the keys are ``image_proj.<name>`` and ``ip_adapter.<name>``. The layout, as
InstantX's code builds it and diffusers' SD3 loader (loaders/transformer_sd3.py) reads it:

- ``image_proj``: a TimeResampler turning SigLIP so400m's penultimate hidden states (1152 wide,
  siglip_encoder.py) into 64 image tokens as wide as the MMDiT (2432 for SD3.5 Large), with the
  denoising timestep mixed in: ``latents`` [1, tokens, width], ``proj_in``, ``proj_out``,
  ``norm_out``, ``time_embedding.linear_1|2`` and per layer ``layers.<i>.0.norm1|norm2|to_q|to_kv|
  to_out`` (attention), ``layers.<i>.1.0|1.1|1.3`` (LayerNorm + feed-forward), ``layers.<i>.2.1``
  (the time AdaLN's projection); heads of 64;
- ``ip_adapter.<n>``: for each attention of the MMDiT (38 joint blocks), ``norm_ip.linear`` (the
  time-conditioned norm of the image tokens), ``to_k_ip`` and ``to_v_ip`` (the image tokens' keys
  and values, no bias) and the RMS norms ``norm_q``, ``norm_k``, ``norm_ip_k`` (64 wide).

They run through diffusers' SD3 IP-Adapter (IPAdapterTimeImageProjection,
SD3IPAdapterJointAttnProcessor2_0, StableDiffusion3Pipeline's ip_adapter_image): each block adds
``scale`` x the attention of its image queries over the image tokens. The modules are built here
from the header rather than by ``load_ip_adapter``, which fixes four resampler layers and reads
every width from whatever tensors it gets: the token count, depth and widths come from the file,
are checked against the MMDiT (width, heads of 64, one block per attention), then on the meta
device against the modules, and the tensors load strictly. A .bin file is opened only as a zip
torch file with ``torch.load(weights_only=True)`` (no code in a pickle runs); converting it to
.safetensors once is better (the README shows how).
"""
from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .adapter_common import EncoderLayout, IPAdapterError

PROJECTION, ATTENTION = "image_proj.", "ip_adapter."
HEAD_WIDTH = 64           # the resampler's and the MMDiT's attention heads
FIX = ("give InstantX's SD3.5-Large-IP-Adapter ip-adapter.bin as released, or its .safetensors conversion")
SOURCE = "https://huggingface.co/InstantX/SD3.5-Large-IP-Adapter"
# InstantX's resampler block names -> diffusers' IPAdapterTimeImageProjectionBlock names
_BLOCK_NAMES = (("0.norm1", "ln0"), ("0.norm2", "ln1"), ("0.to_q", "attn.to_q"), ("0.to_kv", "attn.to_kv"),
                ("0.to_out", "attn.to_out.0"), ("1.0", "adaln_norm"), ("1.1", "ff.net.0.proj"), ("1.3", "ff.net.2"),
                ("2.1", "adaln_proj"))
_RESAMPLER_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")
_ATTENTION_BLOCK = re.compile(r"^(\d+)\.")


@dataclass(frozen=True)
class SD3AdapterLayout:
    """What an InstantX SD3 IP-Adapter's tensors say."""

    name: str
    tokens: int             # image tokens the resampler makes (64)
    image_features: int     # the SigLIP hidden states it reads (1152)
    resampler_width: int    # the resampler's width, also the time embedding's (1280)
    resampler_heads: int
    depth: int              # resampler layers (4)
    feed_forward: int       # the resampler feed-forward's width multiple (4)
    timestep_features: int  # sinusoidal timestep features the resampler embeds (320)
    width: int              # the MMDiT width its tokens, keys and values have (2432: SD3.5 Large)
    head_width: int         # the RMS norms' width: the MMDiT's heads (64)
    blocks: int             # attentions with an IP part (38)

    @property
    def kind(self) -> str:
        return f"InstantX SD3.5, {self.tokens} image tokens"


def is_instantx_sd3_layout(shapes: dict) -> bool:
    """Whether a file's tensors are InstantX's SD3 IP-Adapter's (the resampler's time embedding,
    the blocks' time-conditioned norm)."""
    return f"{PROJECTION}time_embedding.linear_1.weight" in shapes or \
        any(k.startswith(ATTENTION) and k.endswith(".norm_ip.linear.weight") for k in shapes)


def read_shapes(path: str | os.PathLike, fix: str = FIX) -> dict[str, tuple[int, ...]]:
    """An InstantX adapter's tensor names (``image_proj.*``, ``ip_adapter.*``) and shapes; a .bin
    only as a zip torch file through torch.load(weights_only=True). ``fix`` ends the error lines."""
    return {k: tuple(v.shape) for k, v in _read(path, fix, header_only=True).items()}


def read_tensors(path: str | os.PathLike, fix: str = FIX) -> dict:
    """An InstantX adapter's tensors by flat name, as read_shapes names them."""
    return _read(path, fix)


def _read(path: str | os.PathLike, fix: str, header_only: bool = False) -> dict:
    """The adapter's tensors by flat name (or, with ``header_only`` for a .safetensors, objects
    with a ``shape``: nothing is read but the header)."""
    from types import SimpleNamespace

    from ..common.safetensors_file import SafetensorsFileError, load_tensors, read_header

    name = Path(path).name
    if not os.path.isfile(path):
        raise IPAdapterError(f"--ip-adapter: no file {name!r}; {fix}")
    if name.lower().endswith(".bin"):
        return _read_torch_zip(path, name, fix)
    try:
        if header_only:
            return {k: SimpleNamespace(shape=s) for k, (_, s) in read_header(path, name).tensors.items()}
        return load_tensors(path, name)
    except SafetensorsFileError as exc:
        raise IPAdapterError(f"--ip-adapter: {exc}; {fix}") from None


def _read_torch_zip(path, name: str, fix: str) -> dict:
    import pickle

    import torch

    if not zipfile.is_zipfile(path):
        raise IPAdapterError(f"--ip-adapter: {name} is not a zip-format torch file (a legacy pickle is never "
                             "opened); convert it to .safetensors where it came from, or give the released "
                             "ip-adapter.bin")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
        detail = " ".join(str(exc).split())[:120]
        raise IPAdapterError(f"--ip-adapter: {name} cannot be read as torch weights ({detail}); {fix}") from None
    parts = data if isinstance(data, dict) else {}
    if set(parts) != {"image_proj", "ip_adapter"} or not all(isinstance(v, dict) for v in parts.values()):
        raise IPAdapterError(f"--ip-adapter: {name} does not hold the two dictionaries image_proj and ip_adapter "
                             f"of an IP-Adapter; {fix}")
    tensors = {f"{part}.{key}": value for part, values in parts.items() for key, value in values.items()}
    if not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise IPAdapterError(f"--ip-adapter: {name} holds something other than tensors; {fix}")
    for key, value in tensors.items():   # a view (stride 0), sparse or meta tensor can claim any shape over a few bytes
        if value.layout != torch.strided or value.is_meta or \
                value.numel() * value.element_size() > value.untyped_storage().nbytes():
            raise IPAdapterError(f"--ip-adapter: {name}: {key[:80]!r} claims shape {list(value.shape)} without storing "
                                 f"its values (a strided view, sparse or meta tensor); {fix}")
        if not value.is_floating_point():    # quantized or integer values the modules cannot take
            raise IPAdapterError(f"--ip-adapter: {name}: {key[:80]!r} holds {str(value.dtype).removeprefix('torch.')} "
                                 f"values, not floating-point weights; {fix}")
    return tensors


def _module_name(key: str) -> str:
    """The _modules() name of one of the file's tensors (diffusers' names for the resampler)."""
    if key.startswith(PROJECTION):
        rest = key[len(PROJECTION):]
        match = _RESAMPLER_LAYER.match(rest)
        if match:
            number, tail = match.groups()
            for released, ours in _BLOCK_NAMES:
                if tail.startswith(released + "."):
                    tail = ours + tail[len(released):]
                    break
            rest = f"layers.{number}.{tail}"
        return "image_proj." + rest
    return "blocks." + key[len(ATTENTION):]


def inspect_sd3_adapter(shapes: dict[str, tuple[int, ...]], name: str) -> SD3AdapterLayout:
    """The layout from the file's ``shapes``, its parts checked against each other; every tensor
    must belong to it (the meta-device check in attach() then compares each shape)."""
    def shape(key: str, dims: int) -> tuple[int, ...]:
        value = shapes.get(key)
        if value is None or len(value) != dims or not all(value):
            raise IPAdapterError(f"--ip-adapter: {name}: {key} is missing or not {dims}-D; {FIX}")
        return value

    _, tokens, resampler = shape(f"{PROJECTION}latents", 3)
    image_features = shape(f"{PROJECTION}proj_in.weight", 2)[1]
    width = shape(f"{PROJECTION}proj_out.weight", 2)[0]
    timestep = shape(f"{PROJECTION}time_embedding.linear_1.weight", 2)[1]
    heads_width = shape(f"{PROJECTION}layers.0.0.to_q.weight", 2)[0]
    feed_forward = shape(f"{PROJECTION}layers.0.1.1.weight", 2)[0]
    layers = {int(m.group(1)) for k in shapes if k.startswith(PROJECTION)
              and (m := _RESAMPLER_LAYER.match(k[len(PROJECTION):]))}
    head = shape(f"{ATTENTION}0.norm_q.weight", 1)[0]
    numbers = {int(m.group(1)) for k in shapes if k.startswith(ATTENTION)
               and (m := _ATTENTION_BLOCK.match(k[len(ATTENTION):]))}
    stray = sorted(k for k in shapes if not k.startswith((PROJECTION, ATTENTION)))
    if stray:
        raise IPAdapterError(f"--ip-adapter: {name}: {stray[0][:80]!r} is not part of the layout; {FIX}")
    if layers != set(range(len(layers))):     # numbered 0, 1, ... (a lone layers.999999999 would build that many)
        raise IPAdapterError(f"--ip-adapter: {name}: its resampler layers are numbered {min(layers)}..{max(layers)} "
                             f"({len(layers)} layers), not from 0 without gaps; {FIX}")
    if heads_width % HEAD_WIDTH or feed_forward % resampler or numbers != set(range(len(numbers))):
        raise IPAdapterError(f"--ip-adapter: {name}: its resampler's attention is {heads_width} wide (heads of "
                             f"{HEAD_WIDTH}), its feed-forward {feed_forward} for width {resampler}, its IP blocks "
                             f"numbered {min(numbers)}..{max(numbers)} ({len(numbers)}); these do not fit "
                             f"together; {FIX}")
    return SD3AdapterLayout(name, tokens, image_features, resampler, heads_width // HEAD_WIDTH, len(layers),
                            feed_forward // resampler, timestep, width, head, len(numbers))


def check_against_sd3(layout: SD3AdapterLayout, config: dict) -> None:
    """The adapter fits the MMDiT whose diffusers ``config`` (checkpoints.sd3.transformer_config)
    the checkpoint's header gives: its width and heads, and one IP block per attention."""
    from ..checkpoints.sd3 import header_families

    described = header_families(config)[1]
    width = config["num_attention_heads"] * config["attention_head_dim"]
    attentions = config["num_layers"] + len(config["dual_attention_layers"])
    if (layout.width, layout.head_width) != (width, config["attention_head_dim"]):
        raise IPAdapterError(f"--ip-adapter: {layout.name} is for an MMDiT {layout.width} wide (heads of "
                             f"{layout.head_width}) but the checkpoint's is {width} wide ({described}); InstantX's "
                             "IP-Adapter is for SD3.5 Large (2432)")
    if layout.blocks != attentions:
        raise IPAdapterError(f"--ip-adapter: {layout.name} has IP attention for {layout.blocks} attentions but the "
                             f"checkpoint's MMDiT has {attentions} ({described}); InstantX's IP-Adapter is for SD3.5 "
                             "Large (38 blocks)")


def check_encoder(layout: SD3AdapterLayout, encoder: EncoderLayout) -> None:
    """The SigLIP encoder gives the hidden states the resampler reads."""
    if encoder.hidden_size != layout.image_features:
        raise IPAdapterError(f"--image-encoder: {encoder.name} gives {encoder.hidden_size}-wide hidden states but "
                             f"{layout.name} reads {layout.image_features}; give google/siglip-so400m-patch14-384 "
                             "(the encoder InstantX trained it with)")


def _modules(layout: SD3AdapterLayout, weight: float):
    """diffusers' modules for the adapter, named as _module_name() names the file's tensors:
    ``image_proj`` (IPAdapterTimeImageProjection) and ``blocks.<n>`` (SD3IPAdapterJointAttnProcessor2_0)."""
    import torch
    from diffusers.models.attention_processor import SD3IPAdapterJointAttnProcessor2_0
    from diffusers.models.embeddings import IPAdapterTimeImageProjection

    return torch.nn.ModuleDict({
        "image_proj": IPAdapterTimeImageProjection(
            embed_dim=layout.image_features, output_dim=layout.width, hidden_dim=layout.resampler_width,
            depth=layout.depth, dim_head=HEAD_WIDTH, heads=layout.resampler_heads, num_queries=layout.tokens,
            ffn_ratio=layout.feed_forward, timestep_in_dim=layout.timestep_features),
        "blocks": torch.nn.ModuleList(SD3IPAdapterJointAttnProcessor2_0(
            hidden_size=layout.width, ip_hidden_states_dim=layout.width, head_dim=layout.head_width,
            timesteps_emb_dim=layout.resampler_width, scale=weight) for _ in range(layout.blocks))})


def check_modules(layout: SD3AdapterLayout, shapes: dict[str, tuple[int, ...]]) -> None:
    """Every tensor of the file against the modules the layout builds (on the meta device): no
    tensor missing, none extra, each of its shape."""
    import torch

    from ..common.weights import WeightsFileError, check_matches

    with torch.device("meta"):
        probe = _modules(layout, 0.0)
    try:
        check_matches(probe, {_module_name(k): v for k, v in shapes.items()}, layout.name)
    except WeightsFileError as exc:
        raise IPAdapterError(f"--ip-adapter: {exc}; {FIX}") from None


def attach(pipe, adapter_path: str | os.PathLike, layout: SD3AdapterLayout, encoder: EncoderLayout,
           weight: float) -> None:
    """Load the adapter (checked by check_modules when planned) into the SD3 pipeline ``pipe``
    (StableDiffusion3Pipeline or its ControlNet pipeline) with its SigLIP encoder at ``weight``:
    loaded strictly, then handed to the MMDiT as diffusers' own loader would."""
    from .siglip_encoder import image_processor, load_siglip

    state = {_module_name(k): v.float() for k, v in read_tensors(adapter_path).items()}
    modules = _modules(layout, weight)
    modules.load_state_dict(state, strict=True)
    transformer = pipe.transformer
    modules.to(dtype=transformer.dtype)
    processors = dict(transformer.attn_processors)
    for number, processor_name in enumerate(processors):      # diffusers' order: one per attention
        processors[processor_name] = modules["blocks"][number]
    transformer.set_attn_processor(processors)
    transformer.image_proj = modules["image_proj"]
    pipe.register_modules(image_encoder=load_siglip(encoder), feature_extractor=image_processor(encoder))
    pipe.set_ip_adapter_scale(weight)
