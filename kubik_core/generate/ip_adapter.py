"""IP-Adapter (image prompt) for ``kubik generate``: a reference picture steers SD1.5, SDXL, SD3.5 Large and FLUX.1.

The adapter is one .safetensors file as ComfyUI users keep it in models/ipadapter (the h94/
IP-Adapter files): ``image_proj.*`` turns the CLIP vision encoder's output into a few extra
"image tokens", ``ip_adapter.<n>.to_k_ip/to_v_ip`` are the decoupled cross-attention layers (odd
numbers: one per cross-attention of the UNet, in diffusers' processor order, as tencent-ailab's
training script numbers them). Three projection kinds exist and diffusers loads all three:

- basic (ip-adapter_sd15, ip-adapter_sdxl[_vit-h]): ``proj`` + ``norm``, reads the encoder's
  projected ``image_embeds``;
- plus (ip-adapter-plus[-face]_*): a resampler with ``latents``, ``proj_in``, ``proj_out``,
  reads the penultimate hidden states;
- full (ip-adapter-full-face_sd15): ``proj.0``..``proj.3``, reads the hidden states.

FaceID adapters need face embeddings from insightface and are refused with one line. FLUX.1
checkpoints take XLabs-AI's flux-ip-adapter (v1, v2) instead, in XLabs' own layout
(flux_ip_adapter.py), with the same CLIP vision encoders (ViT-L/14 there), or InstantX's
FLUX.1-dev-IP-Adapter (flux_instantx_ip_adapter.py). SD3 checkpoints take InstantX's
SD3.5-Large-IP-Adapter (sd3_ip_adapter.py). Both InstantX adapters read SigLIP (siglip_encoder.py).

The CLIP vision encoder comes from ``--image-encoder``: a folder as transformers saves
CLIPVisionModelWithProjection (config.json + model.safetensors, h94/IP-Adapter's
``models/image_encoder``), or one file as in ComfyUI's models/clip_vision in transformers' key
layout, whose config is that of the ViT-L, ViT-H or ViT-bigG tower its shapes name (the values
of ComfyUI's comfy/clip_vision_config_*.json). Without ``--image-encoder`` an ``image_encoder``
folder beside the adapter file is used, as diffusers' load_ip_adapter looks for it. Nothing is
downloaded.

Everything is checked from the headers before a tensor is read: the adapter's cross-attention
width against the checkpoint's (768 SD1.5, 2048 SDXL), its layer count against the UNet's
cross-attentions, and the width it reads against what the encoder gives (for FLUX: the widths and
double blocks against the FLUX transformer's).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..common.model_config import ConfigFileError, load_config_file
from ..common.pictures import read_picture
from ..common.safetensors_file import SafetensorsFileError, load_tensors, read_header
from .adapter_common import MAX_CONFIG_BYTES, EncoderLayout, IPAdapterError
from .flux_ip_adapter import is_xlabs_layout

ENCODER_FOLDER = "image_encoder"          # diffusers' load_ip_adapter default, beside the adapter
# Cross-attention (text feature) width -> the base model it belongs to.
WIDTH_FAMILY = {768: "SD1.5", 1024: "SD2.x", 2048: "SDXL"}
FAMILY_WIDTH = {"sd15": 768, "sdxl": 2048}
# CLIP vision towers a single file may hold, told by (width, layers); 16 heads each, as ComfyUI's
# comfy/clip_vision_config_vitl.json, _h.json and _g.json give them (the heads are not in the shapes).
KNOWN_TOWERS = {(1024, 24): ("ViT-L/14", "quick_gelu"), (1280, 32): ("ViT-H/14", "gelu"),
                (1664, 48): ("ViT-bigG/14", "gelu")}
TOWER_HEADS = 16
MAX_WEIGHT = 2.0           # the same bound as --control-strength
ADAPTER_FIX = "give the IP-Adapter .safetensors (ComfyUI's models/ipadapter)"
FLUX_FIX = ("give XLabs' flux-ip-adapter .safetensors (v1 or v2) or InstantX's FLUX.1-dev-IP-Adapter for a FLUX.1 "
            "checkpoint")
_LAYER = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.")


@dataclass(frozen=True)
class AdapterLayout:
    """What an IP-Adapter file's header says."""

    name: str
    kind: str                  # "basic", "plus" or "full"
    cross_attention_dim: int   # the text feature width of the UNet it was trained on
    reads: str                 # "image_embeds" (projected) or "hidden_states" (of the encoder)
    image_features: int        # the width it reads
    layers: int                # its decoupled cross-attention layers


@dataclass
class IPAdapterPlan:
    """The adapter, its encoder, the reference picture and the weight with its source; also an
    explain() section (``title`` + ``explain(verbosity)``)."""

    file: str
    kind: str
    encoder: str
    reference: str
    weight: float
    weight_reason: str
    weight_source: str
    encoder_layout: EncoderLayout
    title: str = "IP-Adapter"
    flux_layout: Any = None              # flux_ip_adapter.FluxAdapterLayout for an XLabs FLUX adapter
    sd3_layout: Any = None               # sd3_ip_adapter.SD3AdapterLayout for InstantX's SD3.5 adapter
    instantx_flux_layout: Any = None     # flux_instantx_ip_adapter.InstantXFluxLayout for InstantX's FLUX one
    true_cfg: float | None = None        # FLUX: diffusers' true_cfg_scale (1: off), with its reason and source
    true_cfg_reason: str = ""
    true_cfg_source: str = ""

    def to_dict(self) -> dict:
        """File names only: a local path has no place in a shared picture."""
        data = {"file": self.file, "kind": self.kind, "image_encoder": self.encoder,
                "reference": self.reference, "weight": self.weight, "weight_reason": self.weight_reason,
                "weight_source": self.weight_source}
        if self.true_cfg is not None:
            data.update(true_cfg=self.true_cfg, true_cfg_reason=self.true_cfg_reason,
                        true_cfg_source=self.true_cfg_source)
        return data

    def explain(self, verbosity: str) -> str:
        text = f"IP-Adapter {self.file} ({self.kind}) with the reference {self.reference} at weight {self.weight:g}"
        if verbosity == "minimal":
            return text
        text += f": {self.weight_reason}"
        if verbosity == "technical":
            text += f" [source: {self.weight_source}]"
        if self.true_cfg is not None:
            text += f"; true CFG {self.true_cfg:g}: {self.true_cfg_reason}"
            if verbosity == "technical":
                text += f" [source: {self.true_cfg_source}]"
        return text + "."


def check_inputs(adapter: str | None, reference: str | None, weight: float | None) -> None:
    """The flags that need no model: both files given and present, the weight in range, the
    reference a readable picture (before the checkpoint is even read)."""
    if (adapter is None) != (reference is None):
        raise IPAdapterError("--ip-adapter and --reference go together: give both or neither")
    if adapter is None:
        return
    for flag, path in (("--ip-adapter", adapter), ("--reference", reference)):
        if not os.path.isfile(path):
            raise IPAdapterError(f"{flag}: no file {Path(path).name!r}")
    if weight is not None and not 0 <= weight <= MAX_WEIGHT:
        raise IPAdapterError(f"--ip-adapter-weight: {weight:g}; give 0 to {MAX_WEIGHT:g}")
    reference_image(reference)


def plan_ip_adapter(adapter: str, reference: str, encoder: str | None, weight: float | None,
                    checkpoint_family: str, checkpoint: str, analysis, family: str, transformer=None,
                    true_cfg: float | None = None) -> IPAdapterPlan:
    """Every header checked against the checkpoint and each other, and the weight: ``weight``, or
    the optimizer's IP-Adapter advice for the prompt (params.control, with its source).

    FLUX.1 and SD3: ``transformer`` is the checkpoint's transformer part (.shapes, .name); FLUX.1:
    ``true_cfg`` diffusers' true_cfg_scale (None: XLabs' published 3.5, 1: off)."""
    name = Path(adapter).name
    if checkpoint_family == "sd3":      # InstantX's SD3.5 Large adapter with its SigLIP encoder
        return _plan_sd3(adapter, reference, encoder, weight, transformer, analysis, family)
    _refuse_instantx(adapter, checkpoint_family)
    if checkpoint_family == "flux":
        plan = _plan_instantx_flux(adapter, reference, encoder, weight, transformer, true_cfg)
        if plan is not None:
            return plan
    if checkpoint_family == "flux":
        flux_layout = _inspect_for_flux(adapter, transformer)
        layout_name, kind = flux_layout.name, flux_layout.kind
    else:
        if is_xlabs_layout(_header_shapes(adapter, "--ip-adapter", ADAPTER_FIX)):
            from ..checkpoints import FAMILY_NAMES

            raise IPAdapterError(f"--ip-adapter: {name} is an XLabs FLUX.1 IP-Adapter but the checkpoint is "
                                 f"{FAMILY_NAMES.get(checkpoint_family, checkpoint_family)}; give an IP-Adapter of "
                                 "the checkpoint's family")
        layout = inspect_adapter(adapter)
        check_against_checkpoint(layout, checkpoint_family, checkpoint)
        flux_layout, layout_name, kind = None, layout.name, layout.kind
    encoder = encoder or default_encoder(adapter)
    if encoder is None:
        raise IPAdapterError(f"--image-encoder: {layout_name} needs the CLIP vision encoder it was trained with; "
                             "give its folder or ComfyUI's clip_vision file (none is downloaded)")
    encoder_layout = inspect_encoder(encoder)
    if flux_layout is not None:
        from .flux_ip_adapter import check_encoder as check_flux_encoder

        check_flux_encoder(flux_layout, encoder_layout)
    else:
        check_encoder(layout, encoder_layout)
    value, reason, source = _weight_advice(weight, analysis, family)
    plan = IPAdapterPlan(layout_name, kind, encoder_layout.name, Path(reference).name, value, reason,
                         source, encoder_layout, flux_layout=flux_layout)
    if flux_layout is not None:
        from .flux_ip_adapter import TRUE_CFG, TRUE_CFG_SOURCE

        if true_cfg is None:
            plan.true_cfg, plan.true_cfg_source = TRUE_CFG, TRUE_CFG_SOURCE
            plan.true_cfg_reason = (f"published: XLabs sample their IP-Adapter with true CFG {TRUE_CFG:g} (a second "
                                    "pass each step with the negative prompt and a black reference)")
        else:
            plan.true_cfg, plan.true_cfg_source = float(true_cfg), "--true-cfg"
            plan.true_cfg_reason = f"your choice: {true_cfg:g}" + (" (off)" if true_cfg == 1 else "")
    return plan


def _weight_advice(weight: float | None, analysis, family: str) -> tuple[float, str, str]:
    """(weight, reason, source): ``weight`` as given, or the optimizer's IP-Adapter advice."""
    from ..params.control import advise_control

    if weight is not None:
        return float(weight), f"your choice: {weight:g}", "--ip-adapter-weight"
    advice = next(d for d in advise_control(analysis, family).decisions if d.field == "ip_adapter_weight")
    return float(advice.value), advice.reason, advice.source


def _plan_sd3(adapter: str, reference: str, encoder: str | None, weight: float | None, transformer, analysis,
              family: str) -> IPAdapterPlan:
    """InstantX's SD3.5 Large IP-Adapter (sd3_ip_adapter.py) and its SigLIP encoder
    (siglip_encoder.py), checked against the MMDiT and each other from their headers."""
    from ..checkpoints.sd3 import transformer_config
    from .siglip_encoder import inspect_siglip
    from .sd3_ip_adapter import check_against_sd3, check_encoder as check_sd3_encoder, check_modules, \
        inspect_sd3_adapter, is_instantx_sd3_layout, read_shapes

    name = Path(adapter).name
    shapes = read_shapes(adapter)
    if not is_instantx_sd3_layout(shapes):
        from .flux_instantx_ip_adapter import is_instantx_flux_layout

        what = ("an XLabs FLUX.1 IP-Adapter" if is_xlabs_layout(shapes) else
                "InstantX's FLUX.1 IP-Adapter" if is_instantx_flux_layout(shapes) else
                "an IP-Adapter for a UNet (SD1.5/SDXL layout)" if "image_proj.norm.weight" in shapes or
                "image_proj.latents" in shapes else "not an SD3 IP-Adapter")
        raise IPAdapterError(f"--ip-adapter: {name} is {what} but the checkpoint is SD3; give InstantX's "
                             "SD3.5-Large-IP-Adapter (ip-adapter.bin or its .safetensors conversion)")
    layout = inspect_sd3_adapter(shapes, name)
    check_against_sd3(layout, transformer_config(transformer.shapes, transformer.name))
    check_modules(layout, shapes)
    encoder_layout = inspect_siglip(_siglip_encoder(encoder, adapter, name))
    check_sd3_encoder(layout, encoder_layout)
    value, reason, source = _weight_advice(weight, analysis, family)
    return IPAdapterPlan(layout.name, layout.kind, encoder_layout.name, Path(reference).name, value, reason, source,
                         encoder_layout, sd3_layout=layout)


def _siglip_encoder(encoder: str | None, adapter: str, name: str) -> str:
    """The SigLIP encoder InstantX's adapters need: ``--image-encoder``, else an ``image_encoder``
    beside the adapter file; one line when there is neither (nothing is downloaded)."""
    encoder = encoder or default_encoder(adapter)
    if encoder is None:
        raise IPAdapterError(f"--image-encoder: {name} needs the SigLIP vision encoder it was trained with; give "
                             "google/siglip-so400m-patch14-384's folder or ComfyUI's sigclip_vision_patch14_384 "
                             "file (none is downloaded)")
    return encoder


def _plan_instantx_flux(adapter: str, reference: str, encoder: str | None, weight: float | None, transformer,
                        true_cfg: float | None) -> IPAdapterPlan | None:
    """InstantX's FLUX.1-dev IP-Adapter (flux_instantx_ip_adapter.py) and its SigLIP encoder, checked
    against the FLUX transformer and each other; None when the file is not in InstantX's layout."""
    from ..checkpoints.flux import transformer_config
    from ..params.control import INSTANTX_FLUX_IP_WEIGHT
    from . import flux_instantx_ip_adapter as instantx
    from .sd3_ip_adapter import read_shapes
    from .siglip_encoder import has_pooling_head, inspect_siglip

    try:
        shapes = read_shapes(adapter, instantx.FIX)
    except IPAdapterError:      # not readable as InstantX's: XLabs' checks say what is wrong
        if Path(adapter).name.lower().endswith(".bin"):    # ... unless a .bin, which XLabs' reader never reads
            raise
        return None
    if not instantx.is_instantx_flux_layout(shapes):
        return None
    name = Path(adapter).name
    if true_cfg is not None:
        raise IPAdapterError(f"--true-cfg: {name} is InstantX's FLUX IP-Adapter, which samples without true CFG "
                             "(XLabs' adapters use it); drop --true-cfg")
    layout = instantx.inspect_instantx_flux(shapes, name)
    instantx.check_against_flux(layout, transformer_config(transformer.shapes, transformer.name))
    instantx.check_modules(layout, shapes)
    encoder_layout = inspect_siglip(_siglip_encoder(encoder, adapter, name))
    instantx.check_encoder(layout, encoder_layout, has_pooling_head(encoder_layout))
    if weight is None:
        value, reason, source = INSTANTX_FLUX_IP_WEIGHT
    else:
        value, reason, source = float(weight), f"your choice: {weight:g}", "--ip-adapter-weight"
    return IPAdapterPlan(layout.name, layout.kind, encoder_layout.name, Path(reference).name, value, reason, source,
                         encoder_layout, instantx_flux_layout=layout)


def _refuse_instantx(adapter: str, checkpoint_family: str) -> None:
    """An InstantX adapter given with another family's checkpoint: one line naming both."""
    from ..checkpoints import FAMILY_NAMES
    from .flux_instantx_ip_adapter import is_instantx_flux_layout
    from .sd3_ip_adapter import is_instantx_sd3_layout, read_shapes

    try:
        shapes = read_shapes(adapter)
    except IPAdapterError:      # not readable as either kind: the family's own checks say why
        return
    kind = ("InstantX's SD3.5 Large IP-Adapter" if is_instantx_sd3_layout(shapes) else
            "InstantX's FLUX.1 IP-Adapter" if is_instantx_flux_layout(shapes) and checkpoint_family != "flux" else None)
    if kind is not None:
        raise IPAdapterError(f"--ip-adapter: {Path(adapter).name} is {kind} but the checkpoint is "
                             f"{FAMILY_NAMES.get(checkpoint_family, checkpoint_family)}; give an IP-Adapter of the "
                             "checkpoint's family")


def _inspect_for_flux(adapter: str, flux_transformer):
    """The XLabs layout of ``adapter``, checked against the FLUX transformer; one line otherwise."""
    from ..checkpoints.flux import transformer_config
    from .flux_ip_adapter import check_against_flux, inspect_flux_adapter

    name = Path(adapter).name
    shapes = _header_shapes(adapter, "--ip-adapter", ADAPTER_FIX)
    if not is_xlabs_layout(shapes):
        width = (shapes.get("image_proj.norm.weight") or (0,))[0]
        what = (f"an IP-Adapter for {WIDTH_FAMILY[width]}" if width in WIDTH_FAMILY else
                "an IP-Adapter in h94's layout (image_proj.*, ip_adapter.*)" if "image_proj.norm.weight" in shapes
                else None)
        if what is None:
            raise IPAdapterError(f"--ip-adapter: {name} is not a FLUX.1 IP-Adapter (no ip_adapter_proj_model.* and "
                                 f"double_blocks.*.processor.ip_adapter_double_stream_* tensors); {FLUX_FIX}")
        raise IPAdapterError(f"--ip-adapter: {name} is {what} but the checkpoint is FLUX.1; {FLUX_FIX}")
    layout = inspect_flux_adapter(shapes, name)
    check_against_flux(layout, transformer_config(flux_transformer.shapes, flux_transformer.name))
    return layout


def _header_shapes(path: str | os.PathLike, flag: str, fix: str) -> dict[str, tuple[int, ...]]:
    name = Path(path).name
    if not os.path.isfile(path):
        raise IPAdapterError(f"{flag}: no file {name!r}; {fix}")
    try:
        header = read_header(path, name)
    except SafetensorsFileError as exc:
        raise IPAdapterError(f"{flag}: {exc}; {fix}") from None
    return {key: tuple(shape) for key, (_, shape) in header.tensors.items()}


def _width_name(width: int) -> str:
    return WIDTH_FAMILY.get(width, f"a {width}-wide model")


def inspect_adapter(path: str | os.PathLike) -> AdapterLayout:
    """The layout of the IP-Adapter file ``path``, from its header; IPAdapterError otherwise."""
    name = Path(path).name
    shapes = _header_shapes(path, "--ip-adapter", ADAPTER_FIX)
    proj = {k[len("image_proj."):]: s for k, s in shapes.items() if k.startswith("image_proj.")}
    layers = {k[len("ip_adapter."):]: s for k, s in shapes.items() if k.startswith("ip_adapter.")}
    if not proj or not layers:
        raise IPAdapterError(f"--ip-adapter: {name} is not an IP-Adapter (no image_proj.* and ip_adapter.* "
                             "tensors); give an IP-Adapter .safetensors such as ip-adapter_sd15.safetensors")
    if any("lora" in k for k in layers) or "perceiver_resampler.proj_in.weight" in proj or \
            ("norm.weight" in proj and "proj.0.weight" in proj and "proj.3.weight" not in proj):
        raise IPAdapterError(f"--ip-adapter: {name} is a FaceID IP-Adapter, which needs insightface face "
                             "embeddings; kubik generate loads the image IP-Adapters (basic, plus, full face)")
    try:
        if "proj.weight" in proj:
            width = proj["norm.weight"][0]
            kind, reads, features = "basic", "image_embeds", proj["proj.weight"][1]
            if proj["proj.weight"][0] != 4 * width:      # diffusers' ImageProjection: 4 image tokens
                raise KeyError("proj.weight")
        elif "proj.3.weight" in proj:
            kind, reads, width, features = "full", "hidden_states", proj["proj.3.weight"][0], proj["proj.0.weight"][1]
        elif "latents" in proj:
            kind, reads = "plus", "hidden_states"
            width, features = proj["proj_out.weight"][0], proj["proj_in.weight"][1]
        else:
            raise KeyError("proj.weight")
    except (KeyError, IndexError) as exc:
        raise IPAdapterError(f"--ip-adapter: {name}: its image projection is incomplete or of an unknown kind "
                             f"(image_proj.{exc.args[0]}); give an h94/IP-Adapter file") from None
    numbers = set()
    for key, shape in layers.items():
        match = re.fullmatch(r"(\d+)\.to_[kv]_ip\.weight", key)
        if match is None or len(shape) != 2 or shape[1] != width:
            raise IPAdapterError(f"--ip-adapter: {name}: ip_adapter.{key} does not fit an IP-Adapter for "
                                 f"{_width_name(width)} (to_k_ip/to_v_ip weights {width} wide expected)")
        numbers.add(int(match.group(1)))
    return AdapterLayout(name, kind, width, reads, features, len(numbers))


def check_against_checkpoint(adapter: AdapterLayout, family: str, checkpoint_path: str | os.PathLike) -> None:
    """The adapter belongs to the checkpoint's family and has one layer per cross-attention."""
    from ..checkpoints import FAMILY_NAMES

    width = FAMILY_WIDTH.get(family)
    if width is None:
        raise IPAdapterError(f"--ip-adapter: IP-Adapters load here for SD1.5, SDXL, SD3.5 Large and FLUX.1 "
                             "checkpoints; "
                             f"the checkpoint is {FAMILY_NAMES.get(family, family)}")
    if adapter.cross_attention_dim != width:
        raise IPAdapterError(f"--ip-adapter: {adapter.name} is an IP-Adapter for {_width_name(adapter.cross_attention_dim)} "
                             f"({adapter.cross_attention_dim}-wide text features) but the checkpoint is "
                             f"{WIDTH_FAMILY[width]} ({width}); give an {WIDTH_FAMILY[width]} IP-Adapter")
    shapes = read_header(checkpoint_path, Path(checkpoint_path).name).tensors
    cross = sum(1 for k in shapes if k.startswith("model.diffusion_model.") and k.endswith("attn2.to_k.weight"))
    if cross and adapter.layers != cross:
        raise IPAdapterError(f"--ip-adapter: {adapter.name} has {adapter.layers} cross-attention layers but the "
                             f"checkpoint's UNet has {cross}; it was trained for another "
                             f"{WIDTH_FAMILY[width]} UNet layout")


def default_encoder(adapter_path: str | os.PathLike) -> str | None:
    """The ``image_encoder`` folder beside the adapter (h94/IP-Adapter's layout), if there is one."""
    folder = Path(adapter_path).parent / ENCODER_FOLDER
    return str(folder) if folder.is_dir() else None


def _single_file_config(shapes: dict, name: str) -> dict:
    """CLIPVisionConfig values of a single-file CLIP vision tower (transformers' key layout)."""
    try:
        width, _, patch, _ = shapes["vision_model.embeddings.patch_embedding.weight"]
        positions = shapes["vision_model.embeddings.position_embedding.weight"][0]
        projection = shapes["visual_projection.weight"][0]
        intermediate = shapes["vision_model.encoder.layers.0.mlp.fc1.weight"][0]
    except (KeyError, ValueError):
        raise IPAdapterError(f"--image-encoder: {name} is not a CLIP vision model in transformers' layout "
                             "(vision_model.* and visual_projection.weight); give ComfyUI's clip_vision file "
                             "for the adapter, or a folder with config.json and model.safetensors") from None
    layers = 1 + max(int(m.group(1)) for k in shapes if (m := _LAYER.match(k)))
    tower = KNOWN_TOWERS.get((width, layers))
    if tower is None:
        raise IPAdapterError(f"--image-encoder: {name} is a {layers}-layer, {width}-wide CLIP vision tower, not "
                             "ViT-L, ViT-H or ViT-bigG whose settings are known; give its folder with config.json")
    side = round((positions - 1) ** 0.5) * patch
    return dict(hidden_size=width, intermediate_size=intermediate, num_hidden_layers=layers,
                num_attention_heads=TOWER_HEADS, image_size=side, patch_size=patch, projection_dim=projection,
                hidden_act=tower[1], layer_norm_eps=1e-5)


def inspect_encoder(path: str | os.PathLike) -> EncoderLayout:
    """The widths of the CLIP vision encoder at ``path`` (folder or single file), read from its
    config or header; IPAdapterError otherwise."""
    path = Path(path)
    name = path.name
    if path.is_dir():
        try:
            config = load_config_file(path / "config.json", MAX_CONFIG_BYTES)
        except ConfigFileError as exc:
            raise IPAdapterError(f"--image-encoder: {name}: {exc}; give the encoder's folder (config.json and "
                                 "model.safetensors, as transformers saves CLIPVisionModelWithProjection)") from None
        if config.get("model_type") == "clip" and isinstance(config.get("vision_config"), dict):
            config = {**config["vision_config"], "projection_dim": config.get("projection_dim", 512)}
        if config.get("model_type", "clip_vision_model") != "clip_vision_model":
            raise IPAdapterError(f"--image-encoder: {name} holds a {str(config.get('model_type'))[:40]} model, not "
                                 "a CLIP vision encoder")
        values = [config.get(k, d) for k, d in (("hidden_size", 768), ("projection_dim", 512), ("image_size", 224))]
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 16384 for v in values):
            raise IPAdapterError(f"--image-encoder: {name}: config.json hidden_size, projection_dim and image_size "
                                 "must be whole numbers from 1 to 16384")
        return EncoderLayout(name, str(path), *values)
    shapes = _header_shapes(path, "--image-encoder", "give the CLIP vision folder or ComfyUI's clip_vision "
                                                      ".safetensors file")
    config = _single_file_config(shapes, name)
    return EncoderLayout(name, str(path), config["hidden_size"], config["projection_dim"], config["image_size"],
                         config)


def check_encoder(adapter: AdapterLayout, encoder: EncoderLayout) -> None:
    """The encoder gives what the adapter reads (projected embeddings or hidden states)."""
    given = encoder.projection_dim if adapter.reads == "image_embeds" else encoder.hidden_size
    if given != adapter.image_features:
        what = "projected image embeddings" if adapter.reads == "image_embeds" else "hidden states"
        raise IPAdapterError(f"--image-encoder: {encoder.name} gives {given}-wide {what} but {adapter.name} reads "
                             f"{adapter.image_features}; give the encoder it was trained with (ViT-H/14 for the "
                             "sd15 and _vit-h adapters, ViT-bigG/14 for ip-adapter_sdxl)")


def load_encoder(encoder: EncoderLayout):
    """transformers CLIPVisionModelWithProjection (float32, eval) for ``encoder``."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    if encoder.single_file_config is None:
        from ..consistency.encoders import load_encoder as load_folder

        try:
            return load_folder(encoder.path).model
        except ValueError as exc:
            raise IPAdapterError(f"--image-encoder: {exc}") from None
    from ..common.weights import WeightsFileError, check_matches

    settings = CLIPVisionConfig(**encoder.single_file_config)
    shapes = {k: v for k, v in _header_shapes(encoder.path, "--image-encoder", "give ComfyUI's clip_vision file")
              .items() if k.startswith(("vision_model.", "visual_projection.")) and not k.endswith("position_ids")}
    with torch.device("meta"):
        probe = CLIPVisionModelWithProjection(settings)
    try:
        check_matches(probe, shapes, encoder.name)
    except WeightsFileError as exc:
        raise IPAdapterError(f"--image-encoder: {exc}") from None
    model = CLIPVisionModelWithProjection(settings)
    try:
        state = {k: v.float() for k, v in load_tensors(encoder.path, encoder.name).items() if k in shapes}
    except SafetensorsFileError as exc:
        raise IPAdapterError(f"--image-encoder: {exc}") from None
    model.load_state_dict(state, strict=True)
    return model.eval()


def attach(pipe, adapter_path: str | os.PathLike, plan: IPAdapterPlan, reference: str | None = None) -> None:
    """Load the adapter into ``pipe`` (SD1.5, SDXL, SD3.5 or FLUX.1, with or without ControlNet) with
    its image encoder and image processor, at the plan's weight. InstantX's FLUX adapter takes the
    ``reference`` picture's path here (its tokens are computed once, at loading)."""
    from transformers import CLIPImageProcessor

    encoder, weight = plan.encoder_layout, plan.weight
    if plan.instantx_flux_layout is not None:
        from . import flux_instantx_ip_adapter

        flux_instantx_ip_adapter.attach(pipe, adapter_path, plan.instantx_flux_layout, encoder, weight,
                                        reference_image(reference))
        return
    if plan.sd3_layout is not None:
        from . import sd3_ip_adapter

        sd3_ip_adapter.attach(pipe, adapter_path, plan.sd3_layout, encoder, weight)
        return
    if plan.flux_layout is not None:
        from . import flux_ip_adapter

        try:
            flux_ip_adapter.attach(pipe, adapter_path, plan.flux_layout, load_encoder(encoder), encoder.image_size,
                                   weight)
        except flux_ip_adapter.FluxIPAdapterError as exc:
            raise IPAdapterError(str(exc)) from None
        return
    name = Path(adapter_path).name
    parts: dict[str, dict] = {"image_proj": {}, "ip_adapter": {}}
    try:
        tensors = load_tensors(adapter_path, name)
    except SafetensorsFileError as exc:
        raise IPAdapterError(f"--ip-adapter: {name}: its tensors cannot be read ({exc.reason})") from None
    for key, value in tensors.items():
        part, _, rest = key.partition(".")
        if part in parts:
            parts[part][rest] = value.float()
    image_encoder = load_encoder(encoder)
    size = encoder.image_size
    pipe.register_modules(image_encoder=image_encoder,
                          feature_extractor=CLIPImageProcessor(size={"shortest_edge": size},
                                                               crop_size={"height": size, "width": size}))
    try:
        pipe.load_ip_adapter(parts, subfolder=None, weight_name=None, low_cpu_mem_usage=False)
    except (RuntimeError, KeyError, ValueError) as exc:    # a tensor of the wrong shape or missing
        detail = " ".join(str(exc).split())[:160]
        raise IPAdapterError(f"--ip-adapter: {name} does not fit the checkpoint's UNet ({detail})") from None
    pipe.set_ip_adapter_scale(weight)


def reference_image(path: str | os.PathLike):
    """The reference picture as RGB (CLIP's processor resizes and crops it)."""
    return read_picture(path, "RGB", "--reference", "give a PNG or JPEG", IPAdapterError)
