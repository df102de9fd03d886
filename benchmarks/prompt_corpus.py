"""A seeded generator of varied text-to-image prompts for throughput benchmarks.

Prompts mix subjects, settings, styles, media, lighting, camera terms and quality tags in
random order and number (3 to ~90 words), with ComfyUI and A1111 weight syntax, nesting,
escapes, scheduling, alternation, BREAK/AND, dynamic choices, embeddings, typos and stray
brackets, so no fast path of the analyzer is taken for granted.
"""
from __future__ import annotations

import random

SUBJECTS = ["an old fisherman", "a young woman with freckles", "1girl, long silver hair", "a red fox",
            "a knight in rusted armor", "two cats sleeping", "a cyborg samurai", "a lighthouse",
            "a bowl of ramen", "a vintage sports car", "an astronaut", "a dragon", "a child reading",
            "a ceramic teapot", "a gothic cathedral", "a robot bartender", "a crowd of pilgrims",
            "1boy, spiky hair, scarf", "a barn owl", "a bonsai tree", "a sailing ship", "a witch"]
SETTINGS = ["in a misty forest", "on a neon-lit street at night", "in a desert at noon",
            "inside a cozy library", "on the surface of mars", "by a frozen lake", "in a busy market",
            "underwater coral reef", "at a rainy bus stop", "on a mountain peak", "in a studio",
            "in a medieval village", "floating in space", "in a wheat field", "in a futuristic lab"]
STYLES = ["photorealistic", "anime style", "oil painting", "watercolor", "pixel art", "3d render",
          "concept art", "studio ghibli style", "art nouveau", "cyberpunk", "ukiyo-e", "charcoal sketch",
          "low poly", "vaporwave", "impressionism", "comic book style", "isometric", "claymation"]
LIGHTING = ["golden hour", "dramatic lighting", "soft diffused light", "rim light", "neon glow",
            "volumetric fog", "backlit", "candlelight", "overcast", "studio lighting", "moonlight"]
CAMERA = ["85mm lens", "wide angle", "macro shot", "bokeh", "shallow depth of field", "drone shot",
          "close-up portrait", "full body", "from below", "dutch angle", "35mm film", "tilt-shift"]
QUALITY = ["masterpiece", "best quality", "highly detailed", "8k", "sharp focus", "intricate details",
           "award winning", "score_9, score_8_up", "trending on artstation", "ultra realistic"]
EXTRA = ["smiling", "wearing a hooded cloak", "holding a lantern", "with glowing eyes", "surrounded by cherry blossoms",
         "intricate embroidery", "reflections on wet pavement", "dust particles", "steam rising",
         "colorful", "muted palette", "high contrast", "minimalist", "symmetrical composition"]
POOLS = (SETTINGS, STYLES, LIGHTING, CAMERA, QUALITY, EXTRA)


def _weighted(rng: random.Random, phrase: str) -> str:
    r = rng.random()
    if r < 0.12:
        return f"({phrase}:{rng.choice(['0.7', '0.9', '1.1', '1.2', '1.35', '1.5'])})"
    if r < 0.18:
        return "(" * rng.randint(1, 3) + phrase + ")" * rng.randint(1, 3)  # nested, sometimes unbalanced
    if r < 0.22:
        return f"[{phrase}]"
    if r < 0.24:
        return f"[{phrase}:{rng.choice(SUBJECTS)}:{rng.choice(['0.3', '0.5', '10'])}]"
    if r < 0.25:
        return f"[{phrase}|{rng.choice(STYLES)}]"
    if r < 0.27:
        return f"{{{phrase}|{rng.choice(STYLES)}|{rng.choice(LIGHTING)}}}"
    if r < 0.28:
        return phrase.replace("a", "\\(a\\)", 1)
    return phrase


def make_prompt(rng: random.Random) -> str:
    parts = [rng.choice(SUBJECTS)]
    for _ in range(rng.randint(1, 14)):
        parts.append(rng.choice(rng.choice(POOLS)))
    rng.shuffle(parts)
    parts = [_weighted(rng, p) for p in parts]
    if rng.random() < 0.05:
        parts.insert(rng.randrange(len(parts)), "embedding:EasyNegative")
    if rng.random() < 0.05:
        parts.insert(rng.randrange(len(parts)), rng.choice(["BREAK", "AND"]))
    if rng.random() < 0.03:
        parts.append("(" + rng.choice(EXTRA))  # unbalanced on purpose
    return ", ".join(parts)


def make_corpus(n: int = 10_000, seed: int = 1234) -> list[str]:
    rng = random.Random(seed)
    return [make_prompt(rng) for _ in range(n)]


if __name__ == "__main__":
    for p in make_corpus(10, 1):
        print(p)
