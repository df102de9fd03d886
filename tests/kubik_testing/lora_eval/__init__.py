"""An evaluation set for the LoRA recommender: a realistic library and prompts with the picks a
knowledgeable user would make, written down before the recommender was run on them.

* library.py: 69 LoRAs (SD1.5, SDXL, Pony, Illustrious/NoobAI, FLUX.1; styles, fictional
  characters, real people, concepts, clothing, poses, detail tools and sliders, speed LoRAs) as
  real safetensors files (kohya, LyCORIS, PEFT and ai-toolkit key layouts, kohya ``ss_*`` and
  ModelSpec metadata) with the sidecars users have next to them: CivitAI Helper's
  ``.civitai.info`` (the by-hash answer, whose ``model`` has no tags), Lora-Manager's
  ``.metadata.json`` (tags, model description, usage tips), A1111's ``.json`` (activation text,
  preferred weight), some with none. Each entry also carries the truth the metrics need (its
  family, kind and, for style LoRAs, its medium); those labels are never written to the files.
* cases.py: 63 prompts, each with the LoRAs wanted, those acceptable, and those that would be
  wrong, for a model family.
* metrics.py: precision@3, recall@3, unrequested characters, cross-variant picks and stacked
  style clashes of a recommender's picks.

Used by tests/loras/test_eval_set.py and benchmarks/loras_quality.py.
"""
from .cases import CASES, EvalCase
from .library import LIBRARY, EvalLora, build_library
from .metrics import Scores, score_cases

__all__ = ["CASES", "EvalCase", "EvalLora", "LIBRARY", "Scores", "build_library", "score_cases"]
