"""Kubik Prompt Analyzer: a prompt in, its analysis, cleaned positive and a negative prompt out.

Thin wrapper over kubik_core.prompting.analyze_prompt. Dynamic prompts ({a|b}, __wildcard__)
are resolved here from the seed input, so the prompt widget turns ComfyUI's own dynamic-prompt
handling off ("dynamicPrompts": False) and the same seed always gives the same text.
An empty prompt stops the workflow with a message naming the input. A typed wildcards folder
must lie inside the wildcard roots (bridge.wildcard_roots), and ComfyUI's Cancel stops a long
expansion.
"""
from __future__ import annotations

from . import comfy_bridge as bridge
from ..kubik_core.prompting import (DIALECTS, EmptyPromptError, OllamaConfig, OllamaConfigError,
                                    PromptError, UnknownDialectError, WildcardError,
                                    analyze_prompt, folder_within_roots)


class KubikPromptAnalyzer:
    CATEGORY = "KubikAI/prompting"
    FUNCTION = "analyze"
    DESCRIPTION = ("Reads a prompt as ComfyUI or AUTOMATIC1111 weighs it, resolves {a|b} and "
                   "__wildcards__ from the seed, and finds subjects, style, medium, setting, "
                   "lighting, camera and quality tags; scores complexity and proposes a negative "
                   "prompt suited to the style. A local Ollama model can enrich the analysis; "
                   "without one the rule-based analysis is used and the summary says so.")
    RETURN_TYPES = ("KUBIK_PROMPT_ANALYSIS", "STRING", "STRING", "STRING")
    RETURN_NAMES = ("analysis", "positive", "negative", "summary")
    OUTPUT_TOOLTIPS = (
        "The full analysis (segments, concepts, style, content type, complexity): link to Kubik "
        "Parameter Optimizer.",
        "The positive prompt with dynamic prompts resolved and whitespace/commas tidied, weights "
        "kept: link to CLIPTextEncode text.",
        "A negative prompt suited to the detected style and content that does not contradict the "
        "positive: link to the negative CLIPTextEncode.",
        "One paragraph describing the analysis, with any warnings.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "prompt": ("STRING", {"multiline": True, "dynamicPrompts": False, "default": "",
                           "tooltip": "The prompt. Weights as in the chosen dialect, e.g. (word:1.2); "
                                      "{a|b|c}, {2$$a|b|c} and __wildcard__ are resolved from the seed."}),
                "dialect": (list(DIALECTS), {"default": "comfyui", "tooltip":
                            "Weighting syntax: comfyui = as CLIPTextEncode reads it; a1111 = "
                            "AUTOMATIC1111 webui ([x] /1.1, [a:b:step], [a|b], BREAK, AND)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "tooltip":
                         "Seed for {a|b} and __wildcard__ choices: the same seed always gives the same text."}),
                "wildcards_folder": ("STRING", {"default": "", "tooltip":
                                     "Folder of wildcard .txt files (one option per line, # comments), "
                                     "inside ComfyUI's models/wildcards, ComfyUI/wildcards, the user "
                                     "directory or a folder in KUBIK_WILDCARDS_DIRS; a name is looked "
                                     "up under each of them. Empty: ComfyUI's models/wildcards (or "
                                     "ComfyUI/wildcards) if it exists."}),
                "use_ollama": ("BOOLEAN", {"default": False, "tooltip":
                               "Ask a local Ollama model to enrich the analysis; if it is absent, slow or "
                               "answers garbage, the rule-based analysis is used and the summary says why."}),
                "ollama_url": ("STRING", {"default": "http://127.0.0.1:11434", "tooltip":
                               "Address of the Ollama server (used only when use_ollama is on). "
                               "Only this machine unless the environment variable "
                               "KUBIK_OLLAMA_HOSTS lists the host (or is *)."}),
                "ollama_model": ("STRING", {"default": "llama3.2", "tooltip":
                                 "Ollama model name, as `ollama list` shows it."}),
                "ollama_timeout": ("FLOAT", {"default": 10.0, "min": 0.5, "max": 300.0, "step": 0.5,
                                   "tooltip": "Seconds to wait for Ollama before using the rules alone."}),
            },
        }

    def analyze(self, prompt, dialect, seed, wildcards_folder, use_ollama, ollama_url,
                ollama_model, ollama_timeout):
        for name, value in (("wildcards_folder", wildcards_folder), ("ollama_url", ollama_url),
                            ("ollama_model", ollama_model)):
            if not isinstance(value, str):
                raise ValueError(f"{name}: expected text, got {type(value).__name__}")
        try:
            seed = int(seed)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"seed: expected a whole number, got {str(seed)[:24]!r}") from None
        typed = wildcards_folder.strip()
        try:
            folder = folder_within_roots(typed, bridge.wildcard_roots()) if typed \
                else bridge.wildcards_directory()
        except WildcardError as exc:
            raise ValueError(f"wildcards_folder: {exc}") from None
        ollama = None
        if use_ollama:
            if not ollama_model.strip():
                raise ValueError("ollama_model: empty; type the name of an installed Ollama model "
                                 "(e.g. llama3.2) or turn use_ollama off")
            ollama = OllamaConfig(ollama_url.strip(), ollama_model.strip(), float(ollama_timeout))
        try:
            analysis = analyze_prompt(prompt, dialect, seed, folder, ollama,
                                      check_interrupt=bridge.check_interrupt)
        except EmptyPromptError:
            raise ValueError("prompt: the prompt is empty (nothing visible once whitespace, "
                             "control and zero-width characters are removed); type what the "
                             "image should show") from None
        except UnknownDialectError as exc:
            raise ValueError(f"dialect: {exc}") from None
        except WildcardError as exc:
            where = "wildcards_folder" if typed else "prompt"
            raise ValueError(f"{where}: {exc}") from None
        except OllamaConfigError as exc:
            raise ValueError(f"ollama_{exc.field}: {exc}") from None
        except PromptError as exc:
            raise ValueError(f"prompt: {exc}") from None
        return (analysis, analysis.cleaned, analysis.negative, analysis.summary)


NODE_CLASS_MAPPINGS = {"KubikPromptAnalyzer": KubikPromptAnalyzer}
NODE_DISPLAY_NAME_MAPPINGS = {"KubikPromptAnalyzer": "Kubik Prompt Analyzer"}
