"""Test support code shared by the test folders (workflow checks, ComfyUI server runner)."""
