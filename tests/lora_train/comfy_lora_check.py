"""Run inside ComfyUI's source folder (a subprocess of the tests): load a checkpoint and one or
more LoRAs with ComfyUI's own loaders and print, as one JSON line per LoRA, what its LoRA loader
reported.

ComfyUI logs a warning per LoRA key it cannot map ("lora key not loaded: ...") and per patch
whose weight the model lacks ("NOT LOADED ..."); both are collected. The UNet's output on a fixed
input is compared before and after the LoRA's patches are applied, and given in full ("output")
so that two LoRAs can be compared. The fixed input fits the model's own widths (SD1.5: 768-wide
context; SDXL: 2048-wide context and the 2816-wide size/pooled vector ``y``).
"""
import json
import logging
import sys


class Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def main(checkpoint: str, lora_paths: list[str]) -> None:
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import torch

    import comfy.model_management
    import comfy.sd
    import comfy.utils

    collect = Collect()
    logging.getLogger().addHandler(collect)
    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(checkpoint, output_vae=False, output_clip=True)
    unet = model.model.diffusion_model
    config = model.model.model_config.unet_config
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=generator)
    context = torch.randn(1, 77, config["context_dim"], generator=generator)
    y = torch.randn(1, config["adm_in_channels"], generator=generator) if config.get("adm_in_channels") else None
    timesteps = torch.tensor([500.0])
    dtype = next(unet.parameters()).dtype

    def run(diffusion_model):
        return diffusion_model(x.to(dtype), timesteps, context.to(dtype),
                               None if y is None else y.to(dtype)).float()

    with torch.no_grad():
        before = run(unet)
    for lora_path in lora_paths:
        lora = comfy.utils.load_torch_file(lora_path)
        collect.messages.clear()
        patched_model, patched_clip = comfy.sd.load_lora_for_models(model, clip, lora, 1.0, 1.0)
        problems = [m for m in collect.messages if "lora key not loaded" in m or "NOT LOADED" in m]
        comfy.model_management.load_models_gpu([patched_model], force_patch_weights=True)
        with torch.no_grad():
            after = run(patched_model.model.diffusion_model)
        comfy.model_management.unload_all_models()   # the next LoRA patches the unpatched model
        print(json.dumps({
            "model_type": type(model.model.model_config).__name__,
            "problems": problems,
            "unet_patches": len(patched_model.patches),
            "clip_patches": len(patched_clip.patcher.patches),
            "lora_modules": len({k.split(".")[0] for k in lora}),
            "output_change": float((after - before).abs().max()),
            "finite": bool(torch.isfinite(after).all()),
            "output": after.flatten().tolist(),
        }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
