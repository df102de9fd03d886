"""Kubik Explain: why each parameter was chosen, shown as text on the node."""
from __future__ import annotations

from ..kubik_core.explain import VERBOSITIES, explain
from ..kubik_core.loras.stack import stack_from_input


class KubikExplain:
    CATEGORY = "KubikAI/explain"
    FUNCTION = "explain"
    OUTPUT_NODE = True
    DESCRIPTION = ("Explains the prompt analysis and the sampling plan: what was chosen and why, "
                   "from one line (minimal) to every value with its published source (technical). "
                   "The text shows on the node.")
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("text",)
    OUTPUT_TOOLTIPS = ("The explanation as plain text.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "verbosity": (list(VERBOSITIES), {"default": "standard", "tooltip":
                              "minimal: one line; standard: a paragraph per group; detailed: every "
                              "decision with its reason; technical: plus sources and raw values."}),
            },
            "optional": {
                "analysis": ("KUBIK_PROMPT_ANALYSIS", {"tooltip": "Output of Kubik Prompt Analyzer."}),
                "plan": ("KUBIK_SAMPLING_PLAN", {"tooltip": "Output of Kubik Parameter Optimizer."}),
                "lora_stack": ("KUBIK_LORA_STACK", {"tooltip":
                               "Output of Kubik LoRA Recommender or Kubik LoRA Stack: why each LoRA."}),
                "control_advice": ("KUBIK_CONTROL_ADVICE", {"tooltip":
                                   "Output of Kubik Control Advice: the ControlNet and IP-Adapter values "
                                   "and their sources."}),
                "embedding_advice": ("KUBIK_EMBEDDING_ADVICE", {"tooltip":
                                     "Output of Kubik Embedding Recommender: why each embedding."}),
            },
        }

    def explain(self, verbosity, analysis=None, plan=None, lora_stack=None, control_advice=None,
                embedding_advice=None):
        sections = [stack_from_input(lora_stack, "lora_stack")] if lora_stack is not None else []
        sections += [section for section in (control_advice, embedding_advice) if section is not None]
        text = explain(analysis, plan, verbosity=verbosity, sections=sections)
        return {"ui": {"text": [text]}, "result": (text,)}


NODE_CLASS_MAPPINGS = {"KubikExplain": KubikExplain}
NODE_DISPLAY_NAME_MAPPINGS = {"KubikExplain": "Kubik Explain"}
