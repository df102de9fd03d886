"""Prompts and the LoRAs a knowledgeable user would pick for them from library.py.

Written before the recommender was run on them. For each prompt and model family:

* ``want``: the picks the user would make; each item is a group of alternatives (any one of
  them satisfies it: two style LoRAs the prompt names that would clash when stacked form one
  group). Recall counts the groups satisfied.
* ``ok``: picks the user would accept but not miss (a detail LoRA for "highly detailed", a mood
  LoRA that fits the scene).
* ``wrong``: picks that would be mistakes worth naming (a character the prompt does not name, a
  LoRA of another SDXL variant). Any pick outside ``want`` and ``ok`` counts as not acceptable,
  listed here or not.

An empty ``want`` means: no LoRA of the library fits; the right answer is no LoRA.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvalCase:
    prompt: str
    family: str                                  # kubik_core.params family id
    want: tuple[tuple[str, ...], ...] = ()
    ok: tuple[str, ...] = ()
    wrong: tuple[str, ...] = ()
    why: str = ""

    @property
    def acceptable(self) -> set[str]:
        return {name for group in self.want for name in group} | set(self.ok)


def one(*names: str) -> tuple[tuple[str, ...], ...]:
    """``want`` of separate picks, each needed."""
    return tuple((name,) for name in names)


SD15, SDXL, PONY, ILLU, FLUX = "sd15", "sdxl", "pony", "illustrious", "flux_dev"

S = "sd15/styles/"
X = "sdxl/"
P = "pony/"
I = "illustrious/"
F = "flux/"

CASES: tuple[EvalCase, ...] = (
    # ------------------------------------------------------------------ SD 1.5
    EvalCase("sumi-e ink wash painting of a heron standing in reeds", SD15,
             one(S + "sumie_inkwash_v2.safetensors"), why="style named by its trigger"),
    EvalCase("portrait photo of marisol vance smiling, soft window light, 50mm", SD15,
             one("sd15/people/marisol_vance.safetensors"), why="real person named"),
    EvalCase("nyxvalk standing on a cliff at sunset, winged helmet, dramatic clouds", SD15,
             one("sd15/characters/nyx_valkyrie_oc_v2-000012.safetensors"), why="character trigger"),
    EvalCase("a female knight in silver armor with a winged helmet, fantasy, highly detailed", SD15,
             ok=("sd15/tools/detail_enhancer_sd15.safetensors",),
             wrong=("sd15/characters/nyx_valkyrie_oc_v2-000012.safetensors",),
             why="the character's outfit words are not the character"),
    EvalCase("tiny planet of a snowy village, fisheye view", SD15,
             one("sd15/concepts/tiny_planet.safetensors")),
    EvalCase("young woman wearing a furisode at a shrine, cherry blossoms", SD15,
             one("sd15/clothing/furisode_kimono.safetensors")),
    EvalCase("man with crossed arms leaning on a wall, comic book style, halftone dots", SD15,
             one("sd15/poses/arms_crossed.safetensors", S + "retro_halftone_comic.safetensors")),
    EvalCase("link (zelda) running through hyrule field, green tunic", SD15,
             one("sd15/characters/link_hyrule.safetensors")),
    EvalCase("a chain link fence in an abandoned lot, overcast, photo", SD15,
             wrong=("sd15/characters/link_hyrule.safetensors",),
             why="a common word that is also a character's name"),
    EvalCase("a cyborg woman with mechanical arms, neon city", SD15,
             one("sd15/concepts/cyborg_parts.safetensors"), why="concept named by its trigger word"),
    EvalCase("botanical watercolor of peonies and eucalyptus leaves", SD15,
             one(S + "botanical_watercolor.safetensors")),
    EvalCase("RAW photo of a fisherman mending nets, golden hour", SD15,
             wrong=("sd15/people/marisol_vance.safetensors", "sd15/characters/nyx_valkyrie_oc_v2-000012.safetensors"),
             why="nothing fits"),
    # ------------------------------------------------------------------ SDXL
    EvalCase("a fox made of glass on a marble pedestal, studio lighting", SDXL,
             one(X + "concepts/made_of_glass_xl.safetensors")),
    EvalCase("a glass of red wine on a wooden table, candlelight, still life photo", SDXL,
             wrong=(X + "concepts/made_of_glass_xl.safetensors",), why="'glass' is not 'made of glass'"),
    EvalCase("cinematic film still of a detective in a rainy alley, neon noir, 35mm", SDXL,
             one(X + "styles/cinematic_film_xl.safetensors", X + "styles/neon_noir_xl.safetensors"),
             why="a film look and a mood stack"),
    EvalCase("needle felted wool sculpture of a hedgehog", SDXL,
             one(X + "styles/felted_wool_xl.safetensors")),
    EvalCase("origami crane on a desk, folded paper, soft light", SDXL,
             one(X + "styles/origami_world_xl.safetensors"), why="no trigger words: named by its name"),
    EvalCase("voxel art castle floating in the sky", SDXL,
             one(X + "styles/voxel_blocks_xl.safetensors")),
    EvalCase("ukiyo-e print of a samurai on horseback in samurai armor", SDXL,
             one(X + "styles/ukiyoe_woodblock_xl.safetensors", X + "clothing/samurai_armor_xl.safetensors")),
    EvalCase("low poly isometric diorama of a lighthouse, charcoal drawing", SDXL,
             ((X + "styles/lowpoly_isometric_xl.safetensors", X + "styles/charcoal_sketch_xl.safetensors"),),
             why="two media named: one of them, never both"),
    EvalCase("portrait of captain ilsa korr on the bridge of a starship", SDXL,
             one(X + "characters/captain_ilsa_korr_xl.safetensors")),
    EvalCase("a starship captain in a red uniform on the bridge, sci-fi concept art", SDXL,
             wrong=(X + "characters/captain_ilsa_korr_xl.safetensors",), why="a captain, not the captain"),
    EvalCase("geralt of rivia fighting a griffin in a misty forest, cinematic film still", SDXL,
             one(X + "characters/geralt_witcher_xl.safetensors", X + "styles/cinematic_film_xl.safetensors")),
    EvalCase("a white-haired monster hunter with a scar and a silver sword, dark fantasy", SDXL,
             wrong=(X + "characters/geralt_witcher_xl.safetensors",), why="the character's traits, not his name"),
    EvalCase("photo of ohwx woman in a sunflower field, summer dress", SDXL,
             one(X + "people/elena_portrait_v3.safetensors"), why="DreamBooth class token"),
    EvalCase("dorian hale as a 1920s gangster, black and white photo", SDXL,
             one(X + "people/dorian_hale_xl.safetensors")),
    EvalCase("an old man reading a newspaper on a park bench, photorealistic, 85mm", SDXL,
             wrong=(X + "people/dorian_hale_xl.safetensors", X + "people/elena_portrait_v3.safetensors",
                    X + "tools/age_slider_xl.safetensors"),
             why="no person named; the prompt already says old"),
    EvalCase("a samurai in full o-yoroi armor standing in the snow, ink wash", SDXL,
             one(X + "clothing/samurai_armor_xl.safetensors"),
             wrong=("sd15/styles/sumie_inkwash_v2.safetensors",), why="the ink LoRA is SD 1.5"),
    EvalCase("girl in a clear raincoat walking through a rainy tokyo street at night, neon reflections", SDXL,
             one(X + "clothing/clear_raincoat_xl.safetensors"), ok=(X + "styles/neon_noir_xl.safetensors",)),
    EvalCase("athlete frozen mid-air jumping over a hurdle, dynamic action shot", SDXL,
             one(X + "poses/midair_jump_xl.safetensors")),
    EvalCase("extremely detailed macro photo of a beetle, intricate details, sharp focus", SDXL,
             one(X + "tools/detail_slider_xl.safetensors")),
    EvalCase("glowing bioluminescent mushrooms in a dark cave", SDXL,
             one(X + "concepts/bioluminescence_xl.safetensors")),
    EvalCase("double exposure portrait of a wolf and a pine forest", SDXL,
             one(X + "concepts/double_exposure_xl.safetensors")),
    EvalCase("polaroid photo of friends at a beach party, 1990s", SDXL,
             one(X + "styles/polaroid_xl.safetensors")),
    EvalCase("character sheet of a steampunk inventor, multiple views, front and back", SDXL,
             one(X + "concepts/character_sheet_xl.safetensors"), why="a concept tagged 'character'"),
    EvalCase("a bowl of ramen with chopsticks, food photography", SDXL, why="nothing fits"),
    EvalCase("gouache storybook illustration of a bear family having a picnic", SDXL,
             one(X + "styles/gouache_storybook_xl.safetensors")),
    EvalCase("thick lineart drawing of a knight", SDXL,
             wrong=(P + "styles/thick_lineart_pony.safetensors", X + "styles/charcoal_sketch_xl.safetensors"),
             why="the lineart LoRA is for Pony; charcoal is not lineart"),
    # ------------------------------------------------------------------ Pony
    EvalCase("score_9, score_8_up, score_7_up, 1girl, nyxvalk, silver hair, winged helmet, flying over a "
             "battlefield", PONY, one(P + "characters/nyx_valkyrie_pony.safetensors")),
    EvalCase("score_9, score_8_up, 1girl, fox girl, orange hair, fox ears, shrine maiden, thick lineart", PONY,
             one(P + "styles/thick_lineart_pony.safetensors"),
             wrong=(P + "characters/renna_kitsune_pony.safetensors",), why="fox traits do not name Renna"),
    EvalCase("score_9, score_8_up, renna, fox ears, fox tail, sitting by a campfire, watercolor (medium)", PONY,
             one(P + "characters/renna_kitsune_pony.safetensors", P + "styles/watercolor_anime_pony.safetensors")),
    EvalCase("score_9, score_8_up, 1girl, holographic clothing, cyberpunk city, double v", PONY,
             one(P + "clothing/holographic_clothes_pony.safetensors", P + "poses/double_peace_pony.safetensors")),
    EvalCase("score_9, score_8_up, samus aran, zero suit, standing in a space station, 1990s (style)", PONY,
             one(P + "characters/samus_aran_pony.safetensors", P + "styles/retro_90s_anime_pony.safetensors")),
    EvalCase("score_9, score_8_up, 1girl, blue bodysuit, ponytail, space station, sci-fi", PONY,
             wrong=(P + "characters/samus_aran_pony.safetensors",)),
    EvalCase("score_9, score_8_up, 1girl, sitting by a window, rain on window, cozy room, highly detailed", PONY,
             one(P + "concepts/rain_window_pony.safetensors"), ok=(P + "tools/pony_detailer.safetensors",)),
    EvalCase("cinematic film still of a woman in a red coat, neon noir", PONY,
             wrong=(X + "styles/cinematic_film_xl.safetensors", X + "styles/neon_noir_xl.safetensors"),
             why="the LoRAs named are plain SDXL ones"),
    # ------------------------------------------------------------------ Illustrious / NoobAI
    EvalCase("masterpiece, best quality, frieren, elf, white hair, holding a staff, flower field", ILLU,
             one(I + "characters/frieren_il.safetensors")),
    EvalCase("masterpiece, best quality, 1girl, elf, white hair, twintails, mage, holding a staff, forest", ILLU,
             wrong=(I + "characters/frieren_il.safetensors",)),
    EvalCase("masterpiece, best quality, ruby rose (rwby), red cape, holding a scythe, moonlit night, chibi", ILLU,
             one(I + "characters/ruby_rose_rwby_il.safetensors", I + "styles/pastel_chibi_il.safetensors")),
    EvalCase("masterpiece, 1girl, holding a single red rose, gothic dress, garden", ILLU,
             wrong=(I + "characters/ruby_rose_rwby_il.safetensors",)),
    EvalCase("masterpiece, best quality, 1girl, maid uniform, frilled apron, serving tea, sitting on throne", ILLU,
             one(I + "clothing/maid_uniform_il.safetensors", I + "poses/sitting_on_throne_il.safetensors")),
    EvalCase("masterpiece, best quality, makima (chainsaw man), office, petal storm, falling petals", ILLU,
             one(I + "characters/makima_csm_il.safetensors", I + "concepts/sakura_petal_storm_il.safetensors")),
    EvalCase("masterpiece, best quality, pencil sketch of a cat sleeping on a windowsill", ILLU,
             one("noobai/styles/sketchbook_pencil_noob.safetensors"), why="NoobAI is trained from Illustrious"),
    EvalCase("masterpiece, best quality, impasto oil painting of a lighthouse in a storm, extremely detailed", ILLU,
             one(I + "styles/impasto_oil_il.safetensors"), ok=(I + "tools/il_detail_tweaker.safetensors",)),
    # ------------------------------------------------------------------ FLUX.1
    EvalCase("linocut print of a fox in a winter forest, black and white", FLUX,
             one(F + "styles/flux_linocut_print.safetensors")),
    EvalCase("instant photo of a vintage car parked at a diner, faded colors", FLUX,
             one(F + "styles/flux_vintage_instant.safetensors")),
    EvalCase("portrait of marisol vance on a film set, natural light", FLUX,
             one(F + "people/flux_marisol_vance.safetensors")),
    EvalCase("a woman with short red hair in a space uniform, sci-fi, cinematic", FLUX,
             wrong=(F + "characters/flux_captain_ilsa.safetensors",)),
    EvalCase("tilt-shift miniature of a busy train station", FLUX,
             one(F + "concepts/flux_tiltshift_miniature.safetensors")),
    EvalCase("anime cel shading of a girl in a hanfu on a bridge", FLUX,
             one(F + "styles/flux_anime_cel.safetensors", F + "clothing/flux_hanfu.safetensors")),
    EvalCase("crayon drawing of a dinosaur and a rocket, linocut print", FLUX,
             ((F + "styles/flux_crayon_doodle.safetensors", F + "styles/flux_linocut_print.safetensors"),),
             why="two media named: one of them, never both"),
    EvalCase("close-up portrait of an elderly fisherman, realistic skin texture, highly detailed", FLUX,
             one(F + "tools/flux_skin_texture.safetensors")),
    EvalCase("a steaming cup of coffee on a windowsill, morning light", FLUX, why="nothing fits"),
)
