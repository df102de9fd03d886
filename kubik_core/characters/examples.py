"""Characters that ship with the pack, so the Kubik Character template runs on any ComfyUI.

Their reference pictures are in the pack's ``example_pictures/`` folder (the node reads them
from there, never from the input folder). They are not in any registry file: they cannot be
changed or removed, and no registry character may take their names.
"""
from __future__ import annotations

from .model import Character

EXAMPLES = (
    Character(
        name="Example (coffee cup)",
        positive="a white porcelain cup of coffee with latte art on a saucer",
        style="still life photograph, soft daylight, shallow depth of field",
        negative="blurry, lowres, deformed, text, watermark",
        references=["photo_coffee.jpg"],
        notes="Ships with KubikAI: a subject without LoRAs, whose reference is the pack's coffee photo. "
              "Make your own with `kubik characters add NAME --lora FILE --trigger WORD --reference PICTURE`.",
    ),
)


def example(name: str) -> Character | None:
    """The example character called ``name`` (without case), or None."""
    folded = name.casefold() if isinstance(name, str) else None
    return next((c for c in EXAMPLES if c.name.casefold() == folded), None)
