"""Plumbing shared by every capability; imports no capability package.

- ``bounded_json``: JSON from files and requests that a hostile writer controls (depth, size,
  non-finite and oversized numbers refused with one clear line).
- ``weights``: a model rebuilt from a config is checked against a safetensors file's header
  (names, shapes, parameter count) on the meta device, before any memory is allocated.
"""
