"""Plumbing shared by every capability; imports no capability package.

- ``atomic``: one atomic file write (temporary sibling, fsync, rename, cleanup on failure).
- ``bounded_json``: JSON from files and requests that a hostile writer controls (depth, size,
  non-finite and oversized numbers refused with one clear line).
- ``commands``: ``CommandError``, what every ``kubik`` sub-command raises for a one-line error.
- ``distributed``: torchrun set-up (gloo on CPUs, NCCL on GPUs; a no-op for one process) and
  the ``--device`` check every training command shares.
- ``files``: model files and sidecars opened without blocking on FIFOs or devices.
- ``http``: the politeness of every HTTP client: statuses worth a retry, ``Retry-After``,
  jittered exponential backoff, rate limits, URLs safe to show.
- ``paths``: folders a command writes into, checked first; the cache folder rule.
- ``plots``: matplotlib on its headless backend, figures saved atomically as PNG.
- ``precision``: one ``--precision`` vocabulary (auto, fp32, bf16, fp16) and its autocast.
- ``safetensors_file``: bounded safetensors header reading with its own error type.
- ``schedules``: the warm-up + cosine learning-rate schedule of every training loop.
- ``weights``: a model rebuilt from a config is checked against a safetensors file's header
  (names, shapes, parameter count) on the meta device, before any memory is allocated.
"""
