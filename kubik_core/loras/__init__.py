"""The LoRA library: scan, read metadata and sidecars, detect base architectures, hash, and
recommend LoRAs for a prompt.

    from kubik_core.loras import scan_library, LoraIndex, recommend
    library = scan_library(["/ComfyUI/models/loras"], cache_path=default_cache_path())
    rec = recommend(LoraIndex(library), analysis, family="sdxl", max_loras=3)

Modules: sidecars.py (CivitAI / Lora-Manager / A1111 files), architecture.py (base architecture
and compatibility), entry.py (one LoRA, its header read by kubik_core.common.safetensors_file),
library.py (scan + cache + background hashes), hashing.py (SHA-256, AutoV2, AutoV3), text_index.py (BM25),
lexicon.py (the words that tell kinds, media and names), profile.py (what a LoRA is: its kind,
medium and names, from its metadata), evidence.py (how strongly a prompt asks for each LoRA),
recommend.py (the bar, filters, clashes, strengths, reasons), stack.py (KUBIK_LORA_STACK, and
checked stacks given as data), service.py (the library and embeddings a server keeps between
runs), synthetic.py (real-layout test LoRAs), embeddings.py (textual-inversion
embeddings of ComfyUI's ``embeddings`` folders, proposed as ``embedding:name``), cli.py (``kubik
loras``), demo.py (the ``kubik demo`` section).

Every file in a LoRA folder is treated as written by a stranger: a header, metadata value or
sidecar that is broken or crafted becomes a recorded problem of that file, and the scan goes on.
"""
from .architecture import Architecture, compatibility, detect_architecture
from .entry import LORA_EXTENSIONS, LoraEntry
from .errors import LoraError
from .library import LoraLibrary, default_cache_path, scan_library
from .recommend import (DEFAULT_WEIGHTS, FACTORS, MIN_EVIDENCE, NSFW_LEVELS, PRIORITIES, LoraIndex,
                        Recommendation, recommend)
from .stack import MAX_TOTAL_STRENGTH, LoraStack, StackItem, rebalance

__all__ = [
    "Architecture", "DEFAULT_WEIGHTS", "FACTORS", "LORA_EXTENSIONS", "LoraEntry", "LoraError",
    "LoraIndex", "LoraLibrary", "LoraStack", "MAX_TOTAL_STRENGTH", "MIN_EVIDENCE", "NSFW_LEVELS",
    "PRIORITIES", "Recommendation", "StackItem", "compatibility", "default_cache_path",
    "detect_architecture", "rebalance", "recommend", "scan_library",
]
