"""Prompt analysis: weighted parsing (ComfyUI and A1111 syntax), dynamic prompts, concepts,
style, content type, complexity, negative prompts, and optional Ollama enrichment."""
from .analysis import (COMPLEXITY_DIMENSIONS, CONCEPT_CATEGORIES, CONTENT_TYPES, STYLES,
                       PromptAnalysis)
from .analyzer import MAX_ANALYSED_CHARS, analyze_prompt, clean_prompt
from .dynamic import expand_dynamic
from .errors import (EmptyPromptError, OllamaConfigError, PromptError, UnknownDialectError,
                     WildcardError)
from .limits import MAX_PROMPT_CHARS, MAX_WEIGHT
from .ollama import OllamaConfig
from .parsing import DIALECTS, ParsedPrompt, PromptPart, ScheduleEdit, parse_prompt
from .wildcards import folder_within_roots

__all__ = [
    "COMPLEXITY_DIMENSIONS", "CONCEPT_CATEGORIES", "CONTENT_TYPES", "DIALECTS", "STYLES",
    "MAX_ANALYSED_CHARS", "MAX_PROMPT_CHARS", "MAX_WEIGHT", "EmptyPromptError", "OllamaConfig",
    "OllamaConfigError", "ParsedPrompt", "PromptAnalysis", "PromptError", "PromptPart",
    "ScheduleEdit", "UnknownDialectError", "WildcardError", "analyze_prompt", "clean_prompt",
    "expand_dynamic", "folder_within_roots", "parse_prompt",
]
