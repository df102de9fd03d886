"""Characters that ship with the pack, so the Kubik Character template runs on any ComfyUI.

Their reference pictures are in the pack's ``example_pictures/`` folder (the node reads them
from there, never from the input folder). They are not in any registry file: they cannot be
changed or removed, and no registry character may take their names.
"""
from __future__ import annotations

from .model import Character

EXAMPLES = (
    Character(
        name="Example (espresso cup)",
        positive="a red espresso cup on a matching saucer, a silver spoon beside it",
        style="still life photograph, warm light, shallow depth of field",
        negative="blurry, lowres, deformed, text, watermark",
        references=["photo_coffee.jpg", "photo_coffee_closeup.jpg"],
        notes="Ships with KubikAI: a subject without LoRAs, whose references are the pack's coffee photo "
              "and its close-up. "
              "Make your own with `kubik characters add NAME --lora FILE --trigger WORD --reference PICTURE`.",
    ),
)


def example(name: str) -> Character | None:
    """The example character called ``name`` (without case), or None."""
    folded = name.casefold() if isinstance(name, str) else None
    return next((c for c in EXAMPLES if c.name.casefold() == folded), None)
