"""Image classifiers: honest data splits, timm training, evaluation and inference.

Where things live:

- ``classmap``   the one class-name -> index map saved with every split, checkpoint and model
- ``manifest``   datasets as rows (image path or URL, label, group) from folders, CSV or JSONL
- ``split``      stratified, group-aware train/val/test split that copes with tiny classes
- ``images``     decoding any image file (CMYK, 16-bit, alpha, truncated ...) to RGB, or a clear error
- ``fetch``      URL streaming: LRU disk cache, rate limit, backoff honouring Retry-After
- ``smartcrop``  spectral-residual saliency and a crop box at a target aspect ratio
- ``data``       the training/eval dataset, transforms and the world-size-independent batch sampler
- ``schema``     the bounded schema of model cards and timm kwargs (files from anyone load safely)
- ``model``      timm model building, local pretrained weights, export/load as safetensors + JSON
- ``losses``     logit-adjusted (balanced softmax) loss, mixup/cutmix
- ``train``      the training loop (CPU, GPU, torchrun DDP: one code path)
- ``metrics``    micro/macro top-k accuracy and the confusion matrix
- ``evaluate``   running a model over a manifest; metrics.json, per_class.csv
- ``plots``      training curves and confusion PNGs (drawn with ``common.plots``)
- ``predict``    a loaded classifier applied to images
- ``cli``        ``kubik classify split|fetch|train|eval|predict``
- ``demo``       the digits classifier shown by ``kubik demo``

torchrun set-up, precision, the learning-rate schedule and HTTP retries come from
``kubik_core.common``. Nothing here imports ComfyUI; heavy libraries (timm, matplotlib) load inside functions.
"""
