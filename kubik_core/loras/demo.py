"""`kubik demo` section: a small LoRA library written to the output folder, the LoRAs picked
for the demo's example prompts, and what three consistent edits teach the optimizer.

The library is generated (real safetensors files in kohya and PEFT layouts with kohya metadata
and CivitAI / A1111 sidecars; the weights are random, nothing is downloaded), so the picks show
the recommender's reasoning, not the quality of any real LoRA.
"""
from __future__ import annotations

import json
from pathlib import Path

from .synthetic import kohya_metadata, write_lora

# (file, layout, base, training tags, trigger, CivitAI sidecar: (baseModel, words, thumbs up, downloads))
_LIBRARY = (
    ("sdxl/film_grain_photo_xl.safetensors", "kohya", "sdxl",
     {"film grain": 40, "photo": 38, "analog": 30}, "", ("SDXL 1.0", ["analog film photo"], 2400, 91000)),
    ("sdxl/golden_hour_light_xl.safetensors", "peft", "sdxl",
     {"golden hour": 30, "sunlight": 22, "warm light": 20}, "golden hour light", None),
    ("sdxl/oil_painting_style_xl.safetensors", "kohya", "sdxl",
     {"oil painting": 50, "brush strokes": 35, "canvas": 12}, "", ("SDXL 1.0", ["oil painting style"], 800, 30000)),
    ("sdxl/misty_mountains_xl.safetensors", "kohya", "sdxl",
     {"mountain": 25, "valley": 20, "mist": 18, "fog": 10}, "misty mountains", None),
    ("sdxl/anime_lineart_xl.safetensors", "kohya", "sdxl",
     {"anime": 60, "lineart": 40, "1girl": 30}, "", None),
    ("sdxl/pony_cartoon_style.safetensors", "kohya", "sdxl",
     {"cartoon": 30, "score_9": 30}, "", ("Pony", ["cartoon style"], 500, 20000)),
    ("sd15/anime_eyes_detail.safetensors", "kohya", "sd1",
     {"detailed eyes": 40, "anime": 30, "1girl": 25}, "", ("SD 1.5", ["detailed anime eyes"], 1500, 60000)),
    ("sd15/cherry_blossom_scenery.safetensors", "peft", "sd1",
     {"cherry blossoms": 35, "petals": 20, "spring": 15}, "sakura", None),
    ("sd15/realistic_skin_sd15.safetensors", "kohya", "sd1",
     {"photo": 30, "skin texture": 25, "portrait": 20}, "", None),
    ("flux/product_studio_flux.safetensors", "kohya", "flux",
     {"product shot": 30, "studio lighting": 25, "softbox": 10}, "studio product photo", None),
)


def _write_library(root: Path) -> None:
    for name, layout, base, tags, trigger, civitai in _LIBRARY:
        path = root / name
        stem = path.name.rpartition(".")[0]
        metadata = kohya_metadata(base, stem, tags=tags, trigger=trigger) if layout == "kohya" else {}
        write_lora(path, layout, base, metadata=metadata, seed=len(stem))
        if civitai:
            base_model, words, ups, downloads = civitai
            (path.parent / f"{stem}.civitai.info").write_text(json.dumps({
                "baseModel": base_model, "trainedWords": words, "nsfwLevel": 1,
                "stats": {"downloadCount": downloads, "thumbsUpCount": ups, "thumbsDownCount": ups // 50},
                "model": {"name": stem.replace("_", " "), "tags": list(tags)}}, indent=2))
        elif layout == "peft":
            (path.parent / f"{stem}.json").write_text(json.dumps({
                "description": "", "sd version": {"sd1": "SD1", "sdxl": "SDXL"}[base],
                "activation text": trigger, "preferred weight": 0.8, "notes": ""}, indent=2))


def recommendations(out_dir: Path) -> str:
    from ..learning import GenerationRecord, LearningStore, learned_adjustments, lora_history_scores
    from ..params import optimize
    from ..prompting import analyze_prompt
    from ..prompting.examples import EXAMPLE_PROMPTS
    from .library import scan_library
    from .recommend import LoraIndex, recommend

    root = Path(out_dir) / "loras"
    _write_library(root)
    library = scan_library([root], cache_path=Path(out_dir) / "lora_index.json")
    library.compute_hashes()
    index = LoraIndex(library)
    rows, details, records = [], [], []
    for i, (dialect, family, _priority, prompt) in enumerate(EXAMPLE_PROMPTS, 1):
        analysis = analyze_prompt(prompt, dialect=dialect, seed=7)
        rec = recommend(index, analysis, family=family, max_loras=3)
        picks = ", ".join(f"`{c.name}` {c.strength_model:g}" for c in rec.picks) or "none"
        rows.append(f"| {i} | {family} | {picks} | {rec.trigger_text() or '-'} |")
        details.append(f"**{i}.** `{prompt}` ({family})\n\n{rec.explain('detailed')}\n")
        records.append({"prompt": prompt, "family": family, "recommendation": rec.to_dict()})
    (Path(out_dir) / "recommendations.json").write_text(json.dumps(records, indent=2))

    # Learning, on example edits: three consistent CFG edits move the optimizer's suggestion,
    # and ratings move a LoRA's history factor.
    store = LearningStore(Path(out_dir) / "learning.sqlite3")
    before = optimize(None, "sdxl")
    for final in (5.0, 5.5, 5.0):
        store.record_edits("sdxl", "photographic", {"cfg": before.cfg}, {"cfg": final})
    learned = learned_adjustments(store, "sdxl")
    after = optimize(None, "sdxl", learned=learned)
    for rating in (5, 4, 5):
        gen = store.record_generation(GenerationRecord(prompt=EXAMPLE_PROMPTS[0][3], family="sdxl",
                                                       loras=[{"name": "sdxl/film_grain_photo_xl.safetensors"}]))
        store.record_feedback(gen, rating)
    history = lora_history_scores(store)

    table = ("| # | family | LoRAs picked (strength) | trigger words |\n|---|---|---|---|\n" + "\n".join(rows))
    learning = (f"Learning (example edits and ratings, store `{store.describe()}`): after three edits of "
                f"SDXL's CFG from {before.cfg:g} to 5-5.5 the optimizer suggests CFG {after.cfg:g} "
                f"(learned {learned}); three ratings of 5, 4 and 5 give `film_grain_photo_xl` a "
                f"history factor of {history['sdxl/film_grain_photo_xl.safetensors']:.2f} (unrated: 0.50).")
    return (f"A generated library of {len(library)} LoRAs in `{root}` (kohya and PEFT layouts, "
            "CivitAI and A1111 sidecars; random weights).\n\n" + table + "\n\n" + "\n".join(details)
            + "\n" + learning)
