"""The evaluation library: 69 LoRAs as a user's ComfyUI ``models/loras`` folder holds them.

Every file is a real safetensors LoRA (kubik_core.loras.synthetic: real key names and shapes,
rank 2) with the metadata its trainer writes, and with the sidecars of the tool the user keeps
them with. The mix is deliberate and realistic:

* CivitAI Helper's ``.civitai.info`` is the by-hash answer: version name, ``baseModel``,
  ``trainedWords``, a version description and ``model {name, type, nsfw, poi}``: no tags.
* Lora-Manager's ``.metadata.json`` adds the model's tags and description (``modelDescription``,
  ``civitai.model.tags``) and usage tips.
* A1111's ``<name>.json`` has an activation text, a preferred weight, a description.
* Some files have no sidecar: only kohya's ``ss_*`` and ModelSpec fields, or nothing at all.
* Training tags (``ss_tag_frequency``) are as noisy as real ones: ``1girl``, ``solo``,
  ``looking at viewer`` and Pony's ``score_9`` rank high in many.

The truth used by the metrics (``family``, ``kind``, ``medium``) is never written to a file.
Kinds: style, character (fictional), person (real), concept, clothing, pose, detail (detail
tools and sliders), speed (few-step LoRAs). Media of style LoRAs: what the picture looks made
of; two style LoRAs of different media clash when stacked.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from kubik_core.loras.synthetic import kohya_metadata, write_lora

# The base architecture each family's LoRAs are trained on (kubik_core.loras.synthetic names).
FAMILY_BASE = {"sd15": "sd1", "sdxl": "sdxl", "pony": "sdxl", "illustrious": "sdxl", "noobai": "sdxl",
               "flux": "flux"}
# CivitAI baseModel strings.
CIVITAI_BASE = {"sd15": "SD 1.5", "sdxl": "SDXL 1.0", "pony": "Pony", "illustrious": "Illustrious",
                "noobai": "NoobAI", "flux": "Flux.1 D"}
# ss_sd_model_name: the checkpoint the trainer started from.
TRAINED_ON = {"sd15": "v1-5-pruned-emaonly.safetensors", "sdxl": "sd_xl_base_1.0.safetensors",
              "pony": "ponyDiffusionV6XL_v6StartWithThisOne.safetensors",
              "illustrious": "Illustrious-XL-v0.1.safetensors",
              "noobai": "noobaiXLNAIXL_epsilonPred11Version.safetensors", "flux": "flux1-dev.safetensors"}
PONY_SCORES = {"score_9": 120, "score_8_up": 120, "score_7_up": 110, "source_anime": 60}
BOORU_NOISE = {"1girl": 90, "solo": 85, "looking at viewer": 40, "simple background": 12}


@dataclass(frozen=True)
class EvalLora:
    """One LoRA file of the evaluation library, with its truth and its sidecars."""

    file: str                       # ComfyUI lora_name (relative to the loras folder)
    family: str                     # truth: sd15, sdxl, pony, illustrious, noobai, flux
    kind: str                       # truth: style, character, person, concept, clothing, pose, detail, speed
    medium: str = ""                # truth for style LoRAs ("" = a mood or palette that fits any medium)
    layout: str = "kohya"
    metadata: dict = field(default_factory=dict)    # safetensors __metadata__
    civitai: dict | None = None                     # .civitai.info
    lora_manager: dict | None = None                # .metadata.json
    a1111: dict | None = None                       # .json

    @property
    def stem(self) -> str:
        return Path(self.file).name.rpartition(".")[0]


def kohya(family: str, output_name: str, tags: dict[str, int], **extra: str) -> dict[str, str]:
    """sd-scripts metadata for a LoRA trained on ``family``; ``extra`` adds or replaces fields
    (``modelspec.title``, ``modelspec.trigger_phrase``, ``modelspec.tags``, ``ss_datasets``...)."""
    meta = kohya_metadata(FAMILY_BASE[family], output_name, rank=2, tags=tags,
                          base_model_name=TRAINED_ON[family])
    meta.update(extra)
    return meta


def lycoris(family: str, output_name: str, tags: dict[str, int], algo: str, **extra: str) -> dict[str, str]:
    meta = kohya(family, output_name, tags, **extra)
    meta["ss_network_module"] = "lycoris.kohya"
    meta["ss_network_args"] = json.dumps({"algo": algo, "conv_dim": "2", "conv_alpha": "1"})
    return meta


def ai_toolkit(name: str) -> dict[str, str]:
    """What ostris/ai-toolkit writes into a FLUX.1 LoRA: no ss_* fields, no trigger."""
    return {"format": "pt", "name": name, "version": "1.0",
            "software": json.dumps({"name": "ai-toolkit", "repo": "https://github.com/ostris/ai-toolkit",
                                    "version": "0.1.0"}),
            "training_info": json.dumps({"step": 2500, "epoch": 0})}


def civitai(family: str, model: str, version: str, trained: list[str], description: str = "",
            poi: bool = False, downloads: int = 0, up: int = 0, down: int = 0, model_type: str = "LORA",
            version_id: int = 0, tags: list[str] | None = None) -> dict:
    """A CivitAI model version as GET /model-versions/by-hash/{hash} answers it (what Civitai
    Helper saves as .civitai.info); ``tags`` only where a tool merged the model's tags in."""
    model_obj = {"name": model, "type": model_type, "nsfw": False, "poi": poi}
    if tags is not None:
        model_obj["tags"] = tags
    return {"id": version_id or 100000 + downloads % 99991, "modelId": 50000 + up, "name": version,
            "createdAt": "2024-05-02T10:11:12.000Z", "baseModel": CIVITAI_BASE[family],
            "baseModelType": "Standard", "trainedWords": trained, "description": description,
            "nsfwLevel": 1, "stats": {"downloadCount": downloads, "thumbsUpCount": up, "thumbsDownCount": down},
            "model": model_obj,
            "files": [{"name": "lora.safetensors", "type": "Model", "primary": True,
                       "metadata": {"format": "SafeTensor", "fp": "fp16"}}],
            "images": []}


def lora_manager(family: str, model: str, tags: list[str], description: str = "", trained: list[str] | None = None,
                 poi: bool = False, tips: dict | None = None, version: str = "v1.0",
                 downloads: int = 0, up: int = 0) -> dict:
    """ComfyUI-Lora-Manager's .metadata.json (docs/metadata-json-schema.md)."""
    version_obj = civitai(family, model, version, trained or [], poi=poi, downloads=downloads, up=up)
    version_obj["model"].update(tags=tags, description=description)
    return {"file_name": "", "model_name": model, "file_path": "", "size": 0, "modified": 1714644672.0,
            "sha256": "", "base_model": CIVITAI_BASE[family], "preview_url": "", "preview_nsfw_level": 1,
            "notes": "", "from_civitai": True, "tags": tags, "modelDescription": description,
            "civitai": version_obj, "usage_tips": json.dumps(tips or {}), "favorite": False,
            "metadata_source": "civitai_api"}


def a1111(version: str, activation: str = "", weight: float = 0.0, description: str = "") -> dict:
    return {"description": description, "sd version": version, "activation text": activation,
            "preferred weight": weight, "negative text": "", "notes": ""}


LIBRARY: tuple[EvalLora, ...] = (
    # ------------------------------------------------------------------ SD 1.5
    EvalLora("sd15/styles/sumie_inkwash_v2.safetensors", "sd15", "style", "ink",
             metadata=kohya("sd15", "sumie_inkwash_v2", {"sumi-e": 60, "ink wash painting": 58, "monochrome": 50,
                                                         "bird": 12, "mountain": 10, "no humans": 30}),
             civitai=civitai("sd15", "Sumi-e Ink Wash", "v2", ["sumi-e, ink wash painting"],
                             "<p>Traditional East Asian ink wash painting. Works on landscapes and animals.</p>",
                             downloads=48210, up=3120, down=12)),
    EvalLora("sd15/styles/retro_halftone_comic.safetensors", "sd15", "style", "comic",
             metadata=kohya("sd15", "retro_halftone_comic", {"comic": 40, "halftone": 38, "1boy": 20,
                                                             "speech bubble": 5, "bold lines": 18}),
             a1111=a1111("SD1", "halftone comic style", 0.7,
                         "Retro American comic book look: halftone dots, bold inks, flat colours")),
    EvalLora("sd15/styles/stainedglass_window.safetensors", "sd15", "style", "stained glass",
             metadata=kohya("sd15", "stainedglass_window", {"stained glass": 60, "window": 30, "1girl": 25,
                                                            "colorful": 20, "church": 10, "halo": 6},
                            **{"modelspec.title": "Stained Glass Window Style"})),
    EvalLora("sd15/characters/nyx_valkyrie_oc_v2-000012.safetensors", "sd15", "character",
             metadata=kohya("sd15", "nyx_valkyrie_oc_v2-000012",
                            {"nyxvalk": 50, "1girl": 50, "solo": 48, "silver hair": 45, "armor": 40,
                             "winged helmet": 35, "blue eyes": 30}),
             civitai=civitai("sd15", "Nyx the Valkyrie (OC)", "v2",
                             ["nyxvalk", "silver hair, winged helmet, blue armor"],
                             "<p>My original character Nyx. Use nyxvalk; add the outfit tags for her armor.</p>",
                             downloads=2210, up=180, down=3)),
    EvalLora("sd15/people/marisol_vance.safetensors", "sd15", "person",
             metadata=kohya("sd15", "marisol_vance", {"woman": 40, "brown hair": 35, "smile": 20, "portrait": 30}),
             civitai=civitai("sd15", "Marisol Vance", "v1.0", ["marisol vance"],
                             "<p>Likeness of the actress. Best at 0.7-0.9 with a realistic checkpoint.</p>",
                             poi=True, downloads=15400, up=900, down=40)),
    EvalLora("sd15/concepts/tiny_planet.safetensors", "sd15", "concept",
             metadata=kohya("sd15", "tiny_planet", {"tiny planet": 50, "fisheye": 30, "landscape": 28,
                                                    "sky": 25, "no humans": 40}),
             civitai=civitai("sd15", "Tiny Planet Effect", "v1", ["tiny planet"],
                             "<p>Stereographic little-planet panoramas.</p>", downloads=7800, up=640, down=8)),
    EvalLora("sd15/clothing/furisode_kimono.safetensors", "sd15", "clothing", layout="locon",
             metadata=lycoris("sd15", "furisode_kimono", {"furisode": 45, "kimono": 44, "1girl": 44, "solo": 40,
                                                          "obi": 30, "floral print": 25}, "locon"),
             lora_manager=lora_manager("sd15", "Furisode Kimono", ["clothing", "kimono", "japanese",
                                                                   "traditional clothing"],
                                       "<p>Long-sleeved formal kimono with floral patterns.</p>", ["furisode"],
                                       tips={"strength": 0.8, "strength_min": 0.5, "strength_max": 1.0},
                                       downloads=5300, up=410)),
    EvalLora("sd15/tools/detail_enhancer_sd15.safetensors", "sd15", "detail",
             metadata=kohya("sd15", "detail_enhancer_sd15", {**BOORU_NOISE, "landscape": 40, "portrait": 35,
                                                              "building": 20}),
             civitai=civitai("sd15", "Detail Enhancer", "v1.0", [],
                             "<p>Adds or removes fine detail. Positive weight: more detail, negative: less.</p>",
                             downloads=310000, up=21000, down=150)),
    EvalLora("sd15/poses/arms_crossed.safetensors", "sd15", "pose",
             metadata=kohya("sd15", "arms_crossed", {"crossed arms": 50, "1girl": 30, "1boy": 20, "standing": 35,
                                                     "upper body": 25}),
             civitai=civitai("sd15", "Arms Crossed Pose", "v1", ["crossed arms"],
                             "<p>A confident arms-crossed stance, upper body or cowboy shot.</p>",
                             downloads=3900, up=250, down=4)),
    EvalLora("sd15/speed/lcm-lora-sdv1-5.safetensors", "sd15", "speed"),
    EvalLora("sd15/styles/botanical_watercolor.safetensors", "sd15", "style", "watercolor",
             metadata=kohya("sd15", "botanical_watercolor", {"watercolor": 55, "flower": 50, "leaf": 40,
                                                             "white background": 30, "no humans": 45}),
             civitai=civitai("sd15", "Botanical Watercolor", "v1.1", ["botanical watercolor"],
                             "<p>Scientific-illustration style flowers and plants in loose watercolor.</p>",
                             downloads=11200, up=980, down=6)),
    EvalLora("sd15/characters/link_hyrule.safetensors", "sd15", "character",
             metadata=kohya("sd15", "link_hyrule", {"link \\(zelda\\)": 60, "1boy": 60, "solo": 50,
                                                    "pointy ears": 45, "green tunic": 40, "blonde hair": 40,
                                                    "sword": 20}),
             lora_manager=lora_manager("sd15", "Link (The Legend of Zelda)",
                                       ["character", "video game", "boy", "elf", "the legend of zelda"],
                                       "<p>Link from Breath of the Wild and the classic games.</p>",
                                       ["link \\(zelda\\)", "green tunic, pointy ears, blonde hair"],
                                       downloads=26000, up=1900)),
    EvalLora("sd15/concepts/cyborg_parts.safetensors", "sd15", "concept",
             metadata=kohya("sd15", "cyborg_parts", {"cyborg": 50, "mechanical parts": 40, "1girl": 30,
                                                     "science fiction": 20},
                            **{"modelspec.title": "Cyborg Parts", "modelspec.trigger_phrase": "cyborg",
                               "modelspec.tags": "concept, sci-fi, mechanical",
                               "modelspec.description": "Mechanical limbs and exposed cybernetics"})),
    # ------------------------------------------------------------------ SDXL
    EvalLora("sdxl/styles/gouache_storybook_xl.safetensors", "sdxl", "style", "painting",
             metadata=kohya("sdxl", "gouache_storybook_xl", {"illustration": 50, "gouache": 45, "animal": 30,
                                                              "forest": 20, "no humans": 25}),
             lora_manager=lora_manager("sdxl", "Gouache Storybook",
                                       ["style", "illustration", "painting", "children's book"],
                                       "<p>Soft gouache picture-book illustrations.</p>",
                                       ["gouache storybook illustration"], downloads=8900, up=700)),
    EvalLora("sdxl/styles/felted_wool_xl.safetensors", "sdxl", "style", "felt",
             metadata=kohya("sdxl", "felted_wool_xl", {"felt": 50, "wool": 45, "no humans": 50, "animal": 30,
                                                       "cute": 25}),
             civitai=civitai("sdxl", "Needle Felted Wool", "v1.0", ["needle felted"],
                             "<p>Everything made of needle felted wool. Great for cute animals.</p>",
                             downloads=6400, up=720, down=5)),
    EvalLora("sdxl/styles/origami_world_xl.safetensors", "sdxl", "style", "paper",
             metadata=kohya("sdxl", "origami_world_xl", {"origami": 60, "paper": 50, "folded paper": 40,
                                                         "crane": 10, "no humans": 55}),
             lora_manager=lora_manager("sdxl", "Origami World", ["style", "paper", "origami", "craft"],
                                       "<p>Turns any subject into folded paper origami.</p>", [],
                                       downloads=9100, up=880)),
    EvalLora("sdxl/styles/voxel_blocks_xl.safetensors", "sdxl", "style", "voxel",
             metadata=kohya("sdxl", "voxel_blocks_xl", {"voxel": 50, "cube": 30, "isometric": 10, "no humans": 40}),
             a1111=a1111("SDXL", "voxel art", 0.8, "Blocky voxel art like a sandbox game")),
    EvalLora("sdxl/styles/cinematic_film_xl.safetensors", "sdxl", "style", "photo",
             metadata=kohya("sdxl", "cinematic_film_xl", {"film grain": 50, "cinematic": 45, "realistic": 40,
                                                          "1girl": 30, "1boy": 25, "night": 10}),
             civitai=civitai("sdxl", "Cinematic Film Still", "v3", ["cinematic film still"],
                             "<p>Anamorphic film-still look with grain and teal-orange grading.</p>",
                             downloads=54000, up=4300, down=30),
             lora_manager=lora_manager("sdxl", "Cinematic Film Still",
                                       ["style", "photography", "cinematic", "film grain"],
                                       "<p>Anamorphic film-still look with grain and teal-orange grading.</p>",
                                       ["cinematic film still"], tips={"strength": 0.7}, version="v3",
                                       downloads=54000, up=4300)),
    EvalLora("sdxl/styles/ukiyoe_woodblock_xl.safetensors", "sdxl", "style", "print", layout="loha",
             metadata=lycoris("sdxl", "ukiyoe_woodblock_xl", {"ukiyo-e": 60, "japanese": 30, "wave": 10,
                                                              "1boy": 20, "traditional media": 40}, "loha"),
             civitai=civitai("sdxl", "Ukiyo-e Woodblock Print", "v1", ["ukiyo-e"],
                             "<p>Edo-period woodblock prints: flat colours, bold outlines, paper texture.</p>",
                             downloads=13100, up=1210, down=9, model_type="LoCon")),
    EvalLora("sdxl/styles/lowpoly_isometric_xl.safetensors", "sdxl", "style", "3d",
             metadata=kohya("sdxl", "lowpoly_isometric_xl", {"low poly": 50, "isometric": 48, "3d": 40,
                                                             "no humans": 45, "building": 20}),
             lora_manager=lora_manager("sdxl", "Low Poly Isometric", ["style", "3d", "low poly", "isometric",
                                                                      "game art"],
                                       "<p>Flat-shaded low-poly dioramas seen from an isometric angle.</p>",
                                       ["low poly, isometric"], downloads=12000, up=1000)),
    EvalLora("sdxl/styles/charcoal_sketch_xl.safetensors", "sdxl", "style", "sketch",
             metadata=kohya("sdxl", "charcoal_sketch_xl", {**BOORU_NOISE, "monochrome": 60, "sketch": 55,
                                                           "greyscale": 50, "traditional media": 40},
                            **{"modelspec.title": "Charcoal Sketch", "modelspec.trigger_phrase": "charcoal drawing"})),
    EvalLora("sdxl/styles/neon_noir_xl.safetensors", "sdxl", "style", "",
             metadata=kohya("sdxl", "neon_noir_xl", {"neon lights": 50, "night": 45, "rain": 30, "city": 30,
                                                     "1boy": 20}),
             civitai=civitai("sdxl", "Neon Noir", "v1.0", ["neon noir"],
                             "<p>Moody neon-lit nights, wet streets, deep shadows. Works with any medium.</p>",
                             downloads=21000, up=1800, down=15)),
    EvalLora("sdxl/characters/captain_ilsa_korr_xl.safetensors", "sdxl", "character",
             metadata=kohya("sdxl", "captain_ilsa_korr_xl", {"ilsakorr": 40, "1girl": 40, "solo": 38,
                                                             "short hair": 35, "red hair": 35, "uniform": 30}),
             civitai=civitai("sdxl", "Captain Ilsa Korr", "v1.0", ["ilsakorr, short red hair, space uniform"],
                             "<p>Character LoRA of Captain Ilsa Korr from my sci-fi comic.</p>",
                             downloads=1400, up=120, down=2)),
    EvalLora("sdxl/characters/geralt_witcher_xl.safetensors", "sdxl", "character",
             metadata=kohya("sdxl", "geralt_witcher_xl", {"1boy": 60, "white hair": 55, "scar": 40,
                                                          "armor": 35, "sword": 30, "yellow eyes": 30}),
             lora_manager=lora_manager("sdxl", "Geralt of Rivia (The Witcher 3)",
                                       ["character", "video game", "man", "fantasy", "the witcher"],
                                       "<p>Geralt as he looks in The Witcher 3.</p>",
                                       ["geralt of rivia", "white hair, scar, medallion"],
                                       downloads=33000, up=2500)),
    EvalLora("sdxl/people/dorian_hale_xl.safetensors", "sdxl", "person",
             metadata=kohya("sdxl", "dorian_hale_xl", {"1boy": 40, "beard": 30, "realistic": 40, "suit": 15}),
             civitai=civitai("sdxl", "Dorian Hale", "v1.0", ["dorian hale"],
                             "<p>Actor likeness, trained on 40 press photos.</p>", poi=True,
                             downloads=8700, up=510, down=22)),
    EvalLora("sdxl/people/elena_portrait_v3.safetensors", "sdxl", "person",
             metadata=kohya("sdxl", "elena_portrait_v3", {"ohwx woman": 30, "smiling": 10, "outdoors": 8},
                            ss_datasets=json.dumps([{"subsets": [{"class_tokens": "ohwx woman",
                                                                  "image_dir": "20_ohwx woman"}]}]))),
    EvalLora("sdxl/concepts/made_of_glass_xl.safetensors", "sdxl", "concept",
             metadata=kohya("sdxl", "made_of_glass_xl", {"glass": 50, "transparent": 45, "no humans": 40,
                                                         "animal": 20, "reflection": 15}),
             lora_manager=lora_manager("sdxl", "Made of Glass", ["concept", "glass", "transparent", "objects"],
                                       "<p>Turns any subject into clear glass.</p>", ["made of glass"],
                                       downloads=17000, up=1600)),
    EvalLora("sdxl/concepts/double_exposure_xl.safetensors", "sdxl", "concept",
             metadata=kohya("sdxl", "double_exposure_xl", {"double exposure": 50, "silhouette": 40, "forest": 20,
                                                           "monochrome": 10}),
             civitai=civitai("sdxl", "Double Exposure", "v2.0", ["double exposure"],
                             "<p>Blends a portrait silhouette with a landscape.</p>", downloads=24000, up=2100,
                             down=14)),
    EvalLora("sdxl/clothing/samurai_armor_xl.safetensors", "sdxl", "clothing",
             metadata=kohya("sdxl", "samurai_armor_xl", {"armor": 50, "japanese armor": 45, "1boy": 40,
                                                         "helmet": 30, "katana": 20}),
             lora_manager=lora_manager("sdxl", "Samurai Armor (O-yoroi)", ["clothing", "armor", "samurai",
                                                                         "japanese"],
                                       "<p>Historical Japanese o-yoroi armour, lacquered plates and silk lacing.</p>",
                                       ["o-yoroi, samurai armor"], downloads=6100, up=530)),
    EvalLora("sdxl/clothing/clear_raincoat_xl.safetensors", "sdxl", "clothing",
             metadata=kohya("sdxl", "clear_raincoat_xl", {"raincoat": 50, "transparent raincoat": 45,
                                                          "1girl": 45, "rain": 30, "hood": 15}),
             lora_manager=lora_manager("sdxl", "Clear Vinyl Raincoat", ["clothing", "raincoat", "fashion"],
                                       "<p>See-through vinyl raincoats.</p>", ["clear raincoat"],
                                       tips={"strength": 0.8}, downloads=4100, up=300)),
    EvalLora("sdxl/poses/midair_jump_xl.safetensors", "sdxl", "pose",
             metadata=kohya("sdxl", "midair_jump_xl", {"jumping": 50, "midair": 45, "1girl": 30, "1boy": 20,
                                                       "full body": 40}),
             civitai=civitai("sdxl", "Mid-air Jump Pose", "v1", ["jumping, midair"],
                             "<p>Dynamic jumping poses frozen in the air.</p>", downloads=5200, up=390, down=6)),
    EvalLora("sdxl/tools/detail_slider_xl.safetensors", "sdxl", "detail",
             metadata=kohya("sdxl", "detail_slider_xl", {**BOORU_NOISE, "portrait": 30, "landscape": 28}),
             civitai=civitai("sdxl", "Detail Slider XL", "v1.0", [],
                             "<p>A slider: positive weights add fine detail and texture, negative simplify.</p>",
                             downloads=190000, up=14000, down=90),
             lora_manager=lora_manager("sdxl", "Detail Slider XL", ["tool", "slider", "detail"],
                                       "<p>A slider: positive weights add fine detail and texture, negative "
                                       "simplify.</p>", [], tips={"strength": 1.0, "strength_min": -2.0,
                                                                  "strength_max": 2.0},
                                       downloads=190000, up=14000)),
    EvalLora("sdxl/tools/age_slider_xl.safetensors", "sdxl", "detail",
             metadata=kohya("sdxl", "age_slider_xl", {"1girl": 30, "1boy": 30, "portrait": 40, "old": 20,
                                                      "young": 20}),
             civitai=civitai("sdxl", "Age Slider", "v1.0", [],
                             "<p>Negative weight makes people younger, positive older.</p>",
                             downloads=41000, up=2900, down=40)),
    EvalLora("sdxl/speed/Hyper-SDXL-8steps-lora.safetensors", "sdxl", "speed",
             metadata={"modelspec.architecture": "stable-diffusion-xl-v1-base/lora"}),
    EvalLora("sdxl/speed/sdxl_lightning_4step_lora.safetensors", "sdxl", "speed"),
    EvalLora("sdxl/concepts/bioluminescence_xl.safetensors", "sdxl", "concept",
             metadata=kohya("sdxl", "bioluminescence_xl", {"glowing": 50, "bioluminescence": 45, "mushroom": 30,
                                                           "dark": 30, "no humans": 40}),
             civitai=civitai("sdxl", "Bioluminescence", "v1.0", ["bioluminescent"],
                             "<p>Glowing plants, fungi and sea life.</p>", downloads=14000, up=1300, down=7)),
    EvalLora("sdxl/styles/polaroid_xl.safetensors", "sdxl", "style", "photo",
             metadata=kohya("sdxl", "polaroid_xl", {"photo": 40, "polaroid": 38, "border": 30, "1girl": 20,
                                                    "vintage": 25}),
             a1111=a1111("SDXL", "polaroid photo", 0.8, "Instant camera look with the white frame")),
    EvalLora("sdxl/concepts/character_sheet_xl.safetensors", "sdxl", "concept",
             metadata=kohya("sdxl", "character_sheet_xl", {"reference sheet": 50, "multiple views": 48,
                                                           "1girl": 40, "simple background": 40}),
             lora_manager=lora_manager("sdxl", "Character Turnaround Sheet",
                                       ["concept", "character", "character sheet", "reference sheet", "turnaround"],
                                       "<p>Front, side and back views of one character on a sheet.</p>",
                                       ["character sheet, multiple views"], downloads=29000, up=2600)),
    EvalLora("sdxl/misc/lora_3f9a2c.safetensors", "sdxl", "concept"),
    # ------------------------------------------------------------------ Pony
    EvalLora("pony/styles/thick_lineart_pony.safetensors", "pony", "style", "anime",
             metadata=kohya("pony", "thick_lineart_pony", {**PONY_SCORES, "1girl": 80, "lineart": 60,
                                                           "thick outlines": 55}),
             civitai=civitai("pony", "Thick Lineart Style [Pony]", "v1", ["thick lineart"],
                             "<p>Bold, thick outlines with flat anime colours.</p>", downloads=18000, up=1500,
                             down=10)),
    EvalLora("pony/styles/watercolor_anime_pony.safetensors", "pony", "style", "watercolor",
             metadata=kohya("pony", "watercolor_anime_pony", {**PONY_SCORES, "watercolor \\(medium\\)": 60,
                                                              "1girl": 70, "traditional media": 40}),
             lora_manager=lora_manager("pony", "Watercolor Anime (Pony)", ["style", "watercolor", "anime"],
                                       "<p>Anime characters painted in watercolor.</p>",
                                       ["watercolor \\(medium\\)"], downloads=9800, up=820)),
    EvalLora("pony/characters/nyx_valkyrie_pony.safetensors", "pony", "character",
             metadata=kohya("pony", "nyx_valkyrie_pony", {**PONY_SCORES, "nyxvalk": 50, "1girl": 50,
                                                          "silver hair": 45, "winged helmet": 35}),
             civitai=civitai("pony", "Nyx the Valkyrie (OC)", "Pony v1", ["nyxvalk"],
                             "<p>Pony version of my OC Nyx.</p>", downloads=900, up=70, down=1)),
    EvalLora("pony/characters/renna_kitsune_pony.safetensors", "pony", "character",
             metadata=kohya("pony", "renna_kitsune_pony", {**PONY_SCORES, "renna": 60, "1girl": 60,
                                                           "fox ears": 55, "fox tail": 50, "orange hair": 50}),
             civitai=civitai("pony", "Renna Kitsune", "v1.0", ["renna, fox ears, fox tail, orange hair"],
                             "<p>Renna, a fox spirit from my visual novel. Character LoRA.</p>",
                             downloads=3100, up=260, down=3)),
    EvalLora("pony/clothing/holographic_clothes_pony.safetensors", "pony", "clothing",
             metadata=kohya("pony", "holographic_clothes_pony", {**PONY_SCORES, "holographic clothing": 55,
                                                                 "1girl": 60, "iridescent": 40}),
             lora_manager=lora_manager("pony", "Holographic Clothing", ["clothing", "holographic", "shiny",
                                                                        "futuristic"],
                                       "<p>Iridescent holographic fabric for any outfit.</p>",
                                       ["holographic clothing"], downloads=7600, up=640)),
    EvalLora("pony/tools/pony_detailer.safetensors", "pony", "detail",
             metadata=kohya("pony", "pony_detailer", {**PONY_SCORES, **BOORU_NOISE}),
             lora_manager=lora_manager("pony", "Pony Detailer", ["tool", "detail", "enhancer"],
                                       "<p>More detail and cleaner shading on Pony models.</p>", [],
                                       downloads=52000, up=4100)),
    EvalLora("pony/poses/double_peace_pony.safetensors", "pony", "pose",
             metadata=kohya("pony", "double_peace_pony", {**PONY_SCORES, "double v": 60, "1girl": 60, "smile": 40}),
             civitai=civitai("pony", "Double Peace Sign", "v1", ["double v"],
                             "<p>Both hands making the V sign.</p>", downloads=6600, up=480, down=4)),
    EvalLora("pony/styles/retro_90s_anime_pony.safetensors", "pony", "style", "anime",
             metadata=kohya("pony", "retro_90s_anime_pony", {**PONY_SCORES, "1990s \\(style\\)": 60,
                                                             "retro artstyle": 58, "1girl": 70}),
             lora_manager=lora_manager("pony", "90s Anime Aesthetic (Pony)", ["style", "anime", "retro", "1990s"],
                                       "<p>Cel-animated 1990s TV anime look.</p>",
                                       ["1990s \\(style\\)", "retro artstyle"], downloads=25000, up=2300)),
    EvalLora("pony/concepts/rain_window_pony.safetensors", "pony", "concept",
             metadata=kohya("pony", "rain_window_pony", {**PONY_SCORES, "rain": 50, "window": 48, "indoors": 40,
                                                         "1girl": 30},
                            **{"modelspec.title": "rainy window", "modelspec.trigger_phrase": "rain on window"})),
    EvalLora("pony/characters/samus_aran_pony.safetensors", "pony", "character",
             metadata=kohya("pony", "samus_aran_pony", {**PONY_SCORES, "samus aran": 60, "1girl": 60,
                                                        "ponytail": 50, "blue bodysuit": 45}),
             civitai=civitai("pony", "Samus Aran (Metroid) [Pony]", "v2",
                             ["samus aran", "zero suit, blue bodysuit, ponytail"],
                             "<p>Character LoRA: Samus Aran in the zero suit or the power suit.</p>",
                             downloads=21000, up=1700, down=12)),
    # ------------------------------------------------------------------ Illustrious / NoobAI
    EvalLora("illustrious/styles/pastel_chibi_il.safetensors", "illustrious", "style", "anime",
             metadata=kohya("illustrious", "pastel_chibi_il", {"chibi": 60, "1girl": 60, "pastel colors": 50,
                                                               "solo": 55, "masterpiece": 30}),
             civitai=civitai("illustrious", "Pastel Chibi", "v1.0", ["chibi"],
                             "<p>Cute super-deformed characters in pastel colours.</p>", downloads=12000,
                             up=1100, down=8)),
    EvalLora("illustrious/styles/impasto_oil_il.safetensors", "illustrious", "style", "painting",
             metadata=kohya("illustrious", "impasto_oil_il", {"impasto": 50, "traditional media": 45,
                                                              "painting \\(medium\\)": 45, "1girl": 40}),
             lora_manager=lora_manager("illustrious", "Impasto Oil", ["style", "painting", "impasto",
                                                                      "traditional media"],
                                       "<p>Thick oil paint with visible palette-knife strokes.</p>", ["impasto"],
                                       downloads=8400, up=760)),
    EvalLora("illustrious/characters/frieren_il.safetensors", "illustrious", "character",
             metadata=kohya("illustrious", "frieren_il", {"frieren": 60, "1girl": 60, "elf": 55, "white hair": 50,
                                                          "twintails": 45, "green eyes": 40}),
             civitai=civitai("illustrious", "Frieren (Sousou no Frieren) | Illustrious", "v1",
                             ["frieren", "elf, white hair, twintails, green eyes"],
                             "<p>Frieren from Frieren: Beyond Journey's End.</p>", downloads=44000, up=3900,
                             down=20)),
    EvalLora("illustrious/characters/ruby_rose_rwby_il.safetensors", "illustrious", "character",
             metadata=kohya("illustrious", "ruby_rose_rwby_il", {"ruby rose": 60, "1girl": 60, "red cape": 50,
                                                                 "black hair": 45, "scythe": 30}),
             lora_manager=lora_manager("illustrious", "Ruby Rose (RWBY)", ["character", "anime", "rwby", "girl",
                                                                           "scythe"],
                                       "<p>Ruby Rose from RWBY, volumes 1-3 outfit.</p>",
                                       ["ruby rose \\(rwby\\)", "red cape, black hair, silver eyes"],
                                       downloads=11000, up=950)),
    EvalLora("illustrious/clothing/maid_uniform_il.safetensors", "illustrious", "clothing",
             metadata=kohya("illustrious", "maid_uniform_il", {"maid": 60, "apron": 55, "1girl": 60,
                                                               "frills": 40, "maid headdress": 40}),
             civitai=civitai("illustrious", "Classic Maid Uniform", "v1.0", ["maid uniform, frilled apron"],
                             "<p>Long Victorian-era maid uniform with a frilled apron.</p>", downloads=16000,
                             up=1300, down=9)),
    EvalLora("illustrious/concepts/sakura_petal_storm_il.safetensors", "illustrious", "concept",
             metadata=kohya("illustrious", "sakura_petal_storm_il", {"cherry blossoms": 50, "petals": 48,
                                                                     "falling petals": 45, "1girl": 40}),
             lora_manager=lora_manager("illustrious", "Sakura Petal Storm", ["concept", "cherry blossoms",
                                                                             "petals", "spring"],
                                       "<p>Swirling storms of cherry blossom petals.</p>", ["petal storm"],
                                       downloads=5900, up=500)),
    EvalLora("illustrious/tools/il_detail_tweaker.safetensors", "illustrious", "detail",
             metadata=kohya("illustrious", "il_detail_tweaker", {**BOORU_NOISE, "masterpiece": 50},
                            **{"modelspec.title": "Illustrious Detail Tweaker"})),
    EvalLora("illustrious/poses/sitting_on_throne_il.safetensors", "illustrious", "pose",
             metadata=kohya("illustrious", "sitting_on_throne_il", {"throne": 50, "sitting": 50, "1girl": 40,
                                                                    "crossed legs": 20}),
             civitai=civitai("illustrious", "Sitting on Throne", "v1", ["sitting on throne"],
                             "<p>Regal throne poses.</p>", downloads=4700, up=350, down=3)),
    EvalLora("noobai/styles/sketchbook_pencil_noob.safetensors", "noobai", "style", "sketch", layout="lokr",
             metadata=lycoris("noobai", "sketchbook_pencil_noob", {"sketch": 60, "pencil": 50, "monochrome": 45,
                                                                   "traditional media": 40, "1girl": 35}, "lokr"),
             civitai=civitai("noobai", "Sketchbook Pencil", "v1.0", ["pencil sketch"],
                             "<p>Graphite pencil sketchbook pages.</p>", downloads=7300, up=690, down=5,
                             model_type="LoCon")),
    EvalLora("illustrious/characters/makima_csm_il.safetensors", "illustrious", "character",
             metadata=kohya("illustrious", "makima_csm_il", {"makima \\(chainsaw man\\)": 60, "1girl": 60,
                                                             "red hair": 50, "ringed eyes": 50,
                                                             "braided ponytail": 45}),
             civitai=civitai("illustrious", "Makima (Chainsaw Man)", "v1",
                             ["makima \\(chainsaw man\\)", "ringed eyes, braided ponytail, red hair"],
                             "<p>Character LoRA for Makima.</p>", downloads=38000, up=3100, down=25)),
    # ------------------------------------------------------------------ FLUX.1
    EvalLora("flux/styles/flux_linocut_print.safetensors", "flux", "style", "print", layout="peft",
             metadata=ai_toolkit("flux_linocut_print"),
             civitai=civitai("flux", "Linocut Print", "v1.0", ["linocut print"],
                             "<p>Carved linoleum block prints, black ink on paper.</p>", downloads=6900, up=720,
                             down=4)),
    EvalLora("flux/styles/flux_vintage_instant.safetensors", "flux", "style", "photo", layout="peft",
             metadata=ai_toolkit("flux_vintage_instant"),
             lora_manager=lora_manager("flux", "Vintage Instant Photo", ["style", "photography", "polaroid",
                                                                         "vintage"],
                                       "<p>Faded instant-camera photos.</p>", ["instant photo"],
                                       downloads=15000, up=1400)),
    EvalLora("flux/styles/flux_anime_cel.safetensors", "flux", "style", "anime",
             metadata=kohya("flux", "flux_anime_cel", {"anime": 50, "cel shading": 45, "1girl": 40}),
             civitai=civitai("flux", "Anime Cel Shading FLUX", "v1", ["anime cel shading"],
                             "<p>Flat cel-shaded anime look for FLUX.</p>", downloads=20000, up=1900, down=14)),
    EvalLora("flux/characters/flux_captain_ilsa.safetensors", "flux", "character", layout="peft",
             metadata=ai_toolkit("flux_captain_ilsa"),
             civitai=civitai("flux", "Captain Ilsa Korr (FLUX)", "v1", ["ilsakorr"],
                             "<p>FLUX version of my comic's captain.</p>", downloads=600, up=50, down=1)),
    EvalLora("flux/people/flux_marisol_vance.safetensors", "flux", "person", layout="peft",
             metadata=ai_toolkit("flux_marisol_vance"),
             lora_manager=lora_manager("flux", "Marisol Vance FLUX", ["celebrity", "actress", "woman"],
                                       "<p>Actress likeness for FLUX.1 dev.</p>", ["marisol vance"], poi=True,
                                       downloads=9000, up=600)),
    EvalLora("flux/concepts/flux_tiltshift_miniature.safetensors", "flux", "concept",
             metadata=kohya("flux", "flux_tiltshift_miniature", {"tilt-shift": 50, "miniature": 45,
                                                                 "city": 30, "no humans": 20}),
             civitai=civitai("flux", "Tilt-Shift Miniature", "v1.0", ["tilt-shift miniature"],
                             "<p>Real scenes that look like tiny models.</p>", downloads=11000, up=1000, down=6)),
    EvalLora("flux/tools/flux_skin_texture.safetensors", "flux", "detail", layout="peft",
             metadata=ai_toolkit("flux_skin_texture"),
             lora_manager=lora_manager("flux", "Realistic Skin Texture", ["tool", "detail", "skin", "realism",
                                                                          "photorealistic"],
                                       "<p>Pores, fine wrinkles and natural skin detail instead of plastic "
                                       "skin.</p>", [], tips={"strength": 0.6}, downloads=61000, up=5200)),
    EvalLora("flux/speed/FLUX.1-Turbo-Alpha.safetensors", "flux", "speed", layout="peft"),
    EvalLora("flux/clothing/flux_hanfu.safetensors", "flux", "clothing",
             metadata=kohya("flux", "flux_hanfu", {"hanfu": 50, "chinese clothes": 45, "1girl": 40,
                                                   "long sleeves": 30}),
             civitai=civitai("flux", "Hanfu Traditional Dress", "v1.0", ["hanfu"],
                             "<p>Ming-style hanfu with flowing sleeves.</p>", downloads=9400, up=870, down=5)),
    EvalLora("flux/styles/flux_crayon_doodle.safetensors", "flux", "style", "crayon",
             metadata=kohya("flux", "flux_crayon_doodle", {"crayon": 50, "child's drawing": 40, "no humans": 30},
                            **{"modelspec.title": "Crayon Doodle", "modelspec.trigger_phrase": "crayon drawing",
                               "modelspec.tags": "style, crayon, childlike"})),
)

BY_NAME = {lora.file: lora for lora in LIBRARY}


def build_library(root: Path) -> Path:
    """Write every LoRA of LIBRARY and its sidecars under ``root``; return ``root``."""
    root = Path(root)
    for seed, lora in enumerate(LIBRARY):
        path = root / lora.file
        write_lora(path, lora.layout, FAMILY_BASE[lora.family], metadata=lora.metadata, seed=seed)
        if lora.civitai is not None:
            (path.parent / f"{lora.stem}.civitai.info").write_text(json.dumps(lora.civitai, indent=2))
        if lora.lora_manager is not None:
            data = dict(lora.lora_manager, file_name=lora.stem, file_path=path.as_posix(),
                        size=path.stat().st_size)
            (path.parent / f"{lora.stem}.metadata.json").write_text(json.dumps(data, indent=2))
        if lora.a1111 is not None:
            (path.parent / f"{lora.stem}.json").write_text(json.dumps(lora.a1111, indent=4))
    return root
