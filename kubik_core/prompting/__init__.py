"""Prompt analysis: weighted parsing (ComfyUI and A1111 syntax), dynamic prompts, concepts,
style, content type, complexity, negative prompts, and optional Ollama enrichment."""
from .analysis import (COMPLEXITY_DIMENSIONS, CONCEPT_CATEGORIES, CONTENT_TYPES, STYLES,
                       PromptAnalysis)
from .analyzer import MAX_ANALYSED_CHARS, analyze_prompt, clean_prompt
from .dynamic import expand_dynamic
from .errors import EmptyPromptError, PromptError, UnknownDialectError, WildcardError
from .ollama import OllamaConfig
from .parsing import DIALECTS, ParsedPrompt, PromptPart, ScheduleEdit, parse_prompt

__all__ = [
    "COMPLEXITY_DIMENSIONS", "CONCEPT_CATEGORIES", "CONTENT_TYPES", "DIALECTS", "STYLES",
    "MAX_ANALYSED_CHARS", "EmptyPromptError", "OllamaConfig", "ParsedPrompt", "PromptAnalysis",
    "PromptError", "PromptPart", "ScheduleEdit", "UnknownDialectError", "WildcardError",
    "analyze_prompt", "clean_prompt", "expand_dynamic", "parse_prompt",
]
