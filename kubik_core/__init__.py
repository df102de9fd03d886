"""kubik_core: the KubikAI engine. Pure Python + torch; never imports ComfyUI.

Subpackages, one per capability:
  prompting  prompt parsing (ComfyUI / A1111 weights), dynamic prompts, analysis
  params     model-family detection and sampling-parameter optimisation
  explain    human-readable explanations of the choices made
The ``kubik`` command line lives in ``cli.py``.
"""
__version__ = "0.1.0"
