"""Learning from the user: a store of generations, ratings and edits, and what follows from it.

    from kubik_core.learning import LearningStore, GenerationRecord
    store = LearningStore()                      # SQLite WAL file, or LearningStore("postgresql://...")
    gen = store.record_generation(GenerationRecord(prompt="...", family="sdxl", loras=[...]))
    store.record_feedback(gen, rating=5)
    learned_details(store, "sdxl")               # -> the optimizer's ``learned`` values (bounded)
    lora_history_scores(store)                   # -> the recommender's ``history`` factor

Modules: store.py (writes, reads), location.py (where the pack's store lives:
$KUBIK_LEARNING_URL, the ComfyUI user folder, else the command line's default), database.py
(connections, schema, errors), validate.py (bounds on stored values), scores.py (Wilson,
Bayesian average, Thompson, UCB1), adjust.py (learned values, LoRA history, preset choice), insights.py and cli.py (``kubik insights``).
"""
from .adjust import (MIN_CONSISTENT_EDITS, choose_from_outcomes, choose_preset,
                     learned_adjustments, learned_details, lora_history_scores)
from .errors import LearningError, StoreCorruptError, StoreReadOnlyError, UnknownGenerationError
from .store import (STORE_FILE_NAME, GenerationRecord, LearningStore, ParameterEdits,
                    default_store_location)

__all__ = [
    "GenerationRecord", "LearningError", "LearningStore", "MIN_CONSISTENT_EDITS", "ParameterEdits",
    "STORE_FILE_NAME", "StoreCorruptError", "StoreReadOnlyError", "UnknownGenerationError",
    "choose_from_outcomes", "choose_preset", "default_store_location",
    "learned_adjustments", "learned_details", "lora_history_scores",
]
