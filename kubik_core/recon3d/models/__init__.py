"""The image-to-3D networks, their configs and their file format.

* :mod:`.config`         typed configs (``ModelConfig`` of ``VAEConfig``, ``ImageEncoderConfig``, ``FlowConfig``,
                         training and sampling sections) checked against a bounded schema;
                         ``configs/*.json`` the shipped sizes (``tiny``, ``base``)
* :mod:`.layers`         attention blocks (SDPA), Fourier embedding, adaLN modulation
* :mod:`.vae`            ``ShapeVAE``: surface points -> anchored latent tokens -> signed distance of any point
* :mod:`.image_encoder`  a timm backbone (built offline; weights only from a local file) -> image tokens
* :mod:`.flow`           ``FlowTransformer``: the rectified-flow velocity network over latent tokens
                         (integrated by :mod:`kubik_core.recon3d.sampler`, taught by :mod:`kubik_core.recon3d.train.flow`)
* :mod:`.shape_model`    ``Kubik3DModel`` (VAE [+ image encoder + flow]) and its safetensors file format
"""
