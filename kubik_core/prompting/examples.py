"""Example prompts that `kubik demo` runs through every capability that reads a prompt
(analysis, sampling parameters and their explanation, LoRA picks): both weighting dialects,
weights, a dynamic choice and a scheduled edit, and very different content.

Each entry is (dialect, model family, priority, prompt); the family and priority are what the
demo plans the prompt for.
"""

EXAMPLE_PROMPTS = (
    ("comfyui", "sdxl", "quality",
     "portrait photo of an old fisherman, (weathered skin:1.3), golden hour, 85mm lens, "
     "shallow depth of field, film grain"),
    ("comfyui", "sd15", "balanced",
     "masterpiece, best quality, 1girl, silver hair, school uniform, cherry blossoms, "
     "anime style, ((detailed eyes))"),
    ("a1111", "sdxl", "speed",
     "a vast [misty:stormy:0.4] mountain valley at dawn, oil painting, dramatic lighting, "
     "wide angle, (river:1.2) AND a small wooden cabin :0.6"),
    ("comfyui", "flux_dev", "quality",
     "product shot of a {ceramic|glass|copper} teapot on a marble table, studio lighting, "
     "softbox, 8k, highly detailed"),
    ("comfyui", "sd35_large", "low_vram",
     "cyberpunk street market at night, neon signs, rain reflections, crowded, "
     "cinematic composition, volumetric fog, by a concept artist"),
)
