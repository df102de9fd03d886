"""Training the image-to-3D model: the same code on one CPU, one GPU or many GPUs under torchrun.

* :mod:`.loop`      what both trainers share: process group and device, the run folder (checkpoints,
                    resume, metrics.jsonl, loss.png), AdamW with warm-up + cosine, bf16 autocast, --minutes
* :mod:`.vae`       ``kubik 3d train-vae``: the shape VAE on SDF samples
* :mod:`.encode`    ``kubik 3d encode``: every rendered view of every shape -> a VAE posterior
* :mod:`.flow`      ``kubik 3d train-flow``: image encoder + flow transformer on those latents (and the flow loss)
* :mod:`.evaluate`  held-out volume IoU and surface metrics of latents (validation, evaluation.json)
"""
