"""Words that tell what a LoRA is and what a prompt asks for (read by profile.py and evidence.py).

All phrases are in the form kubik_core.loras.text_index.tokens() gives them: lower case, words
of [a-z0-9], stop words and a trailing plural "s" dropped ("Stained-Glass windows" reads as
"stained glass window").

* KIND_TAGS: CivitAI's model categories and the tags people use for them, as they appear among
  a model's tags (CivitAI, Lora-Manager, modelspec.tags).
* KIND_NAME_WORDS: words in a LoRA's name that say its kind ("... Style", "... Outfit",
  "... Slider").
* KIND_DESCRIPTIONS: how descriptions say it ("character LoRA", "likeness of").
* MEDIA: what a picture looks made of, and the phrases that name each medium. Two style LoRAs of
  different media clash when stacked; a style LoRA fits a prompt that names its medium.
* DETAIL_CUES: prompt phrases that ask for fine detail (what detail LoRAs add).
* GENERIC_WORDS: ordinary words of prompts (the curated prompt vocabulary's subjects, settings,
  lighting, camera and quality words, and the common words below). A name made only of them
  ("Ruby Rose", "Link") does not single anyone out by itself; a word outside them ("nyxvalk",
  "frieren", "ohwx") does.
* UNNAMING_TAGS: training and trigger tags that describe every other image ("1girl", "solo",
  Pony's "score_9"): they never identify a LoRA.
"""
from __future__ import annotations

import json
from pathlib import Path

from .text_index import tokens


def _phrases(text: str) -> frozenset[str]:
    """One phrase per line or comma, normalised with tokens()."""
    out = set()
    for raw in text.replace("\n", ",").split(","):
        words = tokens(raw)
        if words:
            out.add(" ".join(words))
    return frozenset(out)


KINDS = ("style", "character", "person", "concept", "clothing", "pose", "detail", "speed")
IDENTITY_KINDS = frozenset({"character", "person"})

KIND_TAGS = {
    "style": _phrases("style, styles, art style, artstyle, artist style, artist, drawing style, "
                      "painting style, illustration style, photography style, aesthetic, art medium, filter"),
    "character": _phrases("character, characters, anime character, game character, video game character, "
                          "cartoon character, fictional character, original character, oc, comic character, "
                          "movie character, waifu, husbando"),
    "person": _phrases("celebrity, celebrities, real person, real people, actress, actor, singer, musician, "
                       "influencer, politician, athlete, youtuber, streamer, public figure, cosplayer, "
                       "person, likeness"),
    "concept": _phrases("concept, concepts, objects, object, background, backgrounds, buildings, building, "
                        "vehicle, vehicles, animal, animals, creature, creatures, assets, effect, effects, "
                        "environment, scenery"),
    "clothing": _phrases("clothing, clothes, outfit, outfits, costume, costumes, fashion, uniform, "
                         "accessories, accessory, garment, attire, dress, dresses, armor, armour"),
    "pose": _phrases("poses, pose, action, gesture, hand gesture, posture"),
    "detail": _phrases("tool, tools, slider, sliders, detail, details, detailer, enhancer, utility, helper, "
                       "adjuster, tweaker"),
}
KIND_NAME_WORDS = {
    "style": _phrases("style, styles, artstyle, aesthetic, look, filter"),
    "character": _phrases("oc, original character"),
    "clothing": _phrases("outfit, outfits, costume, costumes, clothes, clothing, uniform, attire, dress, gown, "
                         "armor, armour, suit, kimono, hanfu, bikini, swimsuit, lingerie, hoodie, jacket, coat, "
                         "raincoat, boots, hat"),
    "pose": _phrases("pose, poses, posing"),
    "detail": _phrases("slider, sliders, detail, details, detailer, tweaker, enhancer, adjuster, add detail, "
                       "more detail"),
    "concept": _phrases("concept, effect, fx"),
}
# (kind, words that must follow or precede "lora"/"model" in a description), matched on tokens.
KIND_DESCRIPTIONS = {
    "style": _phrases("style lora, art style, style of, in the style, artstyle"),
    "character": _phrases("character lora, character model, character from, lora of the character, "
                          "my original character, my oc"),
    "person": _phrases("likeness, real person, actress, actor, celebrity, singer"),
    "clothing": _phrases("outfit lora, clothing lora, costume lora, outfit for, clothing for"),
    "pose": _phrases("pose lora, poses"),
    "concept": _phrases("concept lora"),
    "detail": _phrases("slider, detail lora, adds detail, add detail, more detail, fine detail, detail tweaker"),
}
# Few-step LoRAs (Lightning, Hyper-SD, LCM, TCD, DMD2, Turbo...): they change the sampler
# settings, so they are named by what they are, never by the prompt.
SPEED_NAMES = _phrases("lcm, tcd, dmd2, pcm, hyper sd, hyper sdxl, hyper flux, lightning, turbo, flash, "
                       "lcm lora, turbo alpha")
SPEED_STEP_WORDS = ("step", "steps")   # "4step", "8 steps", "8steps" with a speed name

# medium -> phrases that name it.
MEDIA = {
    "photo": _phrases("photo, photograph, photography, raw photo, dslr, film photo, analog photo, analog film, "
                      "film grain, film still, cinematic still, cinematic film still, movie still, polaroid, "
                      "instant photo, instant camera, kodak, portra, fujifilm, disposable camera, 35mm film, "
                      "photorealistic, photorealism"),
    "anime": _phrases("anime, manga, anime screencap, cel shading, cel shaded, anime coloring, chibi, "
                      "retro anime, 90s anime, 1990s style, toon shading"),
    "cartoon": _phrases("cartoon, western cartoon, toon"),
    "comic": _phrases("comic, comic book, halftone, ben day dots, graphic novel, manhwa, webtoon"),
    "lineart": _phrases("lineart, line art, thick lineart, thick outline"),
    "painting": _phrases("oil painting, painting, impasto, acrylic painting, acrylic, gouache, oil paint, "
                         "palette knife, painterly, impressionism, impressionist, tempera, oil on canvas"),
    "watercolor": _phrases("watercolor, watercolour, watercolor painting, aquarelle, watercolor medium"),
    "ink": _phrases("ink wash, ink wash painting, sumi e, sumie, ink painting, shuimo, chinese ink"),
    "sketch": _phrases("sketch, pencil sketch, pencil drawing, charcoal, charcoal drawing, graphite, "
                       "sketchbook, crosshatching, pencil"),
    "3d": _phrases("3d render, 3d, cgi, octane render, blender render, unreal engine, low poly, lowpoly"),
    "voxel": _phrases("voxel, voxel art"),
    "pixel": _phrases("pixel art, pixelated, 8 bit, 16 bit, sprite art"),
    "paper": _phrases("origami, papercraft, paper craft, paper cut, papercut, paper art, folded paper, quilling, "
                      "layered paper"),
    "fiber": _phrases("felt, felted, needle felted, wool felt, yarn, knitted, crochet, amigurumi, embroidery"),
    "clay": _phrases("claymation, clay, plasticine, stop motion"),
    "stained glass": _phrases("stained glass"),
    "print": _phrases("ukiyo e, ukiyoe, woodblock, woodblock print, linocut, linocut print, lino cut, linoleum, "
                      "screen print, risograph, etching, engraving"),
    "crayon": _phrases("crayon, crayon drawing, child drawing, childlike drawing, kid drawing"),
    "sticker": _phrases("sticker, die cut sticker"),
    "vector": _phrases("vector art, flat design, flat illustration"),
    "mosaic": _phrases("mosaic"),
    "graffiti": _phrases("graffiti, street art"),
}
# The words that name each medium itself, not one look within it ("painting", "painterly", not
# "impasto" or "gouache"; "photo", not "polaroid"): a style LoRA named only with them is the
# medium's general LoRA ("Oil Painting XL", "Pixel Art", "Painterly"), fit for any prompt that
# names the medium.
MEDIA_CORE = {
    "photo": _phrases("photo, photograph, photography, photorealistic, photorealism, raw photo, realistic photo"),
    "anime": _phrases("anime, manga, anime screencap, anime coloring"),
    "cartoon": _phrases("cartoon, toon"),
    "comic": _phrases("comic, comic book"),
    "lineart": _phrases("lineart, line art"),
    "painting": _phrases("painting, oil painting, painterly, oil paint, acrylic painting"),
    "watercolor": _phrases("watercolor, watercolour, watercolor painting, aquarelle"),
    "ink": _phrases("ink wash, ink painting"),
    "sketch": _phrases("sketch, pencil sketch, pencil drawing"),
    "3d": _phrases("3d render, 3d, cgi"),
    "voxel": _phrases("voxel, voxel art"),
    "pixel": _phrases("pixel art, pixelated"),
    "paper": _phrases("paper art, papercraft, paper craft, papercut, paper cut"),
    "fiber": _phrases("yarn, knitted, crochet, felt, felted"),
    "clay": _phrases("claymation, clay"),
    "stained glass": _phrases("stained glass"),
    "print": _phrases("print, linocut, woodblock print"),
    "crayon": _phrases("crayon, crayon drawing"),
    "sticker": _phrases("sticker"),
    "vector": _phrases("vector art"),
    "mosaic": _phrases("mosaic"),
    "graffiti": _phrases("graffiti"),
}
MEDIUM_FILLERS = frozenset({"art", "artwork", "drawing", "image", "picture"})
DETAIL_CUES = _phrases("detailed, highly detailed, extremely detailed, ultra detailed, intricate, intricate detail, "
                       "intricately detailed, hyperdetailed, hyper detailed, fine detail, high detail, "
                       "more detail, detail, insane detail")
# Words that label what a LoRA does rather than what it shows ("Castle Detail" shows a castle;
# "Detail Tweaker" is a general detail tool: its name is nothing but these words).
LABEL_WORDS = frozenset(w for word in """
detail details detailed detailer tweaker enhancer adjuster add more extra helper effect fx concept
""".split() for w in tokens(word))
# Trigger descriptors that follow a character's name ("silver hair, fox ears, zero suit").
APPEARANCE_WORDS = frozenset("""
hair hairstyle ponytail twintail twintails braid braided bangs bun ahoge eye eyes ear ears tail tails horn
horns wing wings skin freckle freckles scar tattoo bodysuit suit outfit uniform dress cape armor armour
helmet glasses tunic
""".split())

UNNAMING_TAGS = _phrases("""
1girl, 1boy, 2girls, 2boys, 3girls, multiple girls, multiple boys, solo, solo focus, no humans,
looking at viewer, simple background, white background, upper body, full body, cowboy shot, portrait,
close up, smile, open mouth, standing, sitting, outdoors, indoors, day, night, masterpiece,
best quality, high quality, highres, absurdres, very aesthetic, newest, realistic, photorealistic,
score 9, score 8 up, score 7 up, score 6 up, score 5 up, score 4 up, source anime, source cartoon,
source pony, source furry, rating safe, rating questionable, rating explicit
""")

# Words removed from names before matching: file-name noise, base models, adapter kinds, the
# label words that say the kind (the kind is read separately).
NAME_NOISE = frozenset(w for word in """
lora loras locon loha lokr dora lycoris lyco model models sdxl xl sd sd1 sd15 sd2 sd3 sd35 pony pdxl ponyxl
illustrious illu il ilxl noob noobai flux flux1 fluxd f1d dev schnell base final epoch ep version ver
style styles artstyle character char oc concept pose poses slider sliders tweaker effect fx tool
""".split() for w in tokens(word))

_COMMON_WORDS = """
a about above across action adult afternoon against age aged ahead air alley alone along amazing ancient
angle angry animal apple apron arm arms army around art artist artwork ash asleep athlete attack autumn
baby back background backlight bag bakery ball balloon band bank bar bare bark barn base basket bath
battle beach beam bear beard beast beautiful bed bedroom bee beer behind bell belt bench between
bicycle big bird birthday black blade blanket blonde blood bloom blossom blue blur board boat body bold
bone book boot boots border bottle bottom bow bowl box boy bracelet braid branch brass bread breakfast
brick bride bridge bright broken bronze brook brother brown brush bubble bucket bug building bunny burning
bus bush business butterfly button cabin cafe cage cake calm camera camp campfire candle candy canyon cap
captain car card carpet carriage carrying castle cat cave ceiling cellar chain chair chalk champion
character chart chef cherry chest chibi chicken child chimney chocolate choir church cigarette circle city
clear cliff clock cloak close closed cloth cloud clouds clown coast coat coffee cold collar color colorful
column comb comet cookie cool copper coral corn corner costume cottage couch country couple cow crab craft
crane crater cream creature crew crop cross crow crowd crown crystal cube cup curly curtain cute dagger
daisy dance dancer dancing dark dawn day dead deck deep deer demon desert desk detective diamond diner
dinner dinosaur dirt dirty dish distance diver dock doctor dog doll dome door double dove dragon drawing
dream dress drink driver drop drum dry duck dusk dust eagle ear earring earth east eating edge egg elder
elderly elegant elephant empty end energy engine evening eye eyes face factory fairy fall family fan
fancy farm fashion fast father feather female fence field fighter fighting figure film fire fireplace
fish fisherman flag flame flat flight floating floor flower fly flying fog foggy food foot forest fork
fountain fox frame friend friends frog front frost frozen fruit full fun fur game garden gate gear gem
ghost giant gift girl glass glasses glow glowing gold golden good grain grand grass gray great green grey
ground group guard guitar gun hair half hall hammer hand hands happy harbor harbour hat head heart heavy
hedge helmet hero hidden high hill hills holding hole home honey hood horn horse hospital hot hotel house
huge human hunter hurdle ice icy inside iron island jacket jar jewel jewelry jump jumping jungle key king
kitchen kite knife knight lace lady lake lamp land lantern large laser late lava lawn leaf lean leaning
leather left leg legend library light lighthouse lightning lily line link lion lip little living lizard
lock long lost love low lunch machine magic maid mail man map marble market mask meadow meal mechanical
metal midnight milk mirror mist misty modern monk monkey monster moon moonlit morning moss mother motor
mountain mouse mouth mud mug museum mushroom music musician narrow nature neck necklace neon nest net
new newspaper night ninja noble north nose ocean office old open orange orchard outdoor outside owl paint
painter palace pale palm paper park party path pattern peak pearl pen pencil people pet petal phone
piano picnic picture pier pig pillow pilot pine pink pipe pirate pizza place plain planet plant plate
player pocket poet pond pool poor portrait post pot power priest prince princess prison puppy purple queen
rabbit race rail rain rainbow rainy raven ready red reed reflection rest ribbon rice rider right ring
river road robe robot rock rocket roof room root rope rose round royal ruby ruin ruins run running rust
sad safe sail sailor salt sand scale scar scarf school scythe sea season seat shadow shark sharp sheep
shelf shell shield ship shirt shoe shop shore short shoulder shrine side sign silent silk silver singer
sister sitting sky skirt skull sleep sleeping slow small smile smoke snake snow snowy soft soldier
son song south space spark spear spider spirit spring square staff stage stair stand standing star
starship statue steam steel stick still stone storm story straight strange straw street strong student
suit summer sun sunflower sunny sunrise sunset sweet sword table tail tall tea teacher team tear tent
thin throne tiger tiny toast tomb tongue tool tooth top torch tower town toy track train tree trees
tribe truck tunic turtle twin umbrella uniform valley vase vehicle velvet village vine violet wall
walking war warm warrior watch water wave wax weapon wedding west wet whale wheel white wide wife wild
wind window wine wing winter witch wizard wolf woman wood wooden wool world worn wrist yard yellow young
zombie
able above absolute accent acid act active actual add adventure advice afraid agent agree alert alien alive
all almost alpha alternate amber among amount angel anger animated annual answer any apart appear area
argument armor armour arrow article aside asleep assist atom attention aunt author auto average awake award
aware away awful bad balance bare barrel basic battery beauty become beginning being below best better
beyond bitter blank blast blind bloody blow board bond bonus boss both bottom bound brain brave break
breath brief brilliant bring broad buddy build bullet burn busy cable calm cancer candy capital care
career careful case cash cast casual catch cause center central century certain challenge chance change
channel chaos charge charm chase cheap check cheese cherry chief choice chosen circus civil claim class
classic clean clever click climb close club clue coach code coin collect college combat comfort comic
command common company complete complex concept concrete condition control cook cool core correct cosmic
cost count courage course court cover crack crash crazy create credit crime crisis critical cruel cry
cure current curse custom cut cycle daily damage danger dark data date deadly deal dear death debt decent
deep defense delta demand design desire destiny detail device devil diet different digital direct dirty
disco divine doom double down draft drama draw drift drive drunk due duty dynamic early easy echo edge
effect effort electric element elite else emerald emotion empire energy enemy engine epic equal error
escape essential eternal even event every evil exact example excellent exit expert express extra extreme
fable faith fake false fame fancy fantasy fatal fate favorite fear feature feel fierce final fine finger
first fit fix flash flat flesh flip flow focus folk force forever form formal fortune forward free
fresh front fuel full funny future gain gamma general gentle genuine ghost gift glad global glory go
grace grade grand grave gravity grim gross guest guide guilty habit half happy hard harmony harsh hate
haven health hear heat heaven hell help hero hidden hint history hit hold holiday hollow holy honest
honor hope horror host hour huge humble hunger hunt hurt ice icon idea ideal idle illusion image impact
infinite inner insane instant iron item jazz job joke joy judge junior just keen kick kid kind kiss
knock known label labor last late laugh law lazy lead lean legacy legal level liberty life light like
limit liquid live local logic lone lonely loose lord lose loud lovely loyal luck lucky mad magic main
major make male mark mass master match max maze meaning medium mega memory mental mercy mess metro micro
middle mighty mild mind mini minor miracle mission mixed mode model modern moment money mood mortal
most motion move much murder mute mutual mystery myth naked name natural near neat need nerve neutral
never next nice nightmare noble noise normal note nothing novel nuclear null number object odd offer
official omega one only open opposite oracle order origin other outer over pain pair panic paradise
part partner party pass past patch patience pattern pause peace penalty perfect period phantom phase
photo pick piece pilot pink pitch plain plan plastic play plus point poison polar police polite pop
pose positive power practical precious present press pretty price pride prime private prize pro project
promise proof proper proud public pulse pure push quality quest quick quiet radio rage random rapid rare
raw real reason rebel record red regular relax release remote rescue reverse rich ride riot rise risk
rival rocky rogue romance rough royal rule rush sacred safe salty same sample savage scared scene secret
secure seed self sense serious service set seven several shade shape share shine shock shot sick sight
signal silly simple sin single six skill slim slow smart smooth social solid sorry soul sound source
spare special speed spell spin spirit split sport spot stable star state static status steady step
stick stiff still stock stop strange stress strict strike strip strong studio style subtle success
sudden sugar super supreme sure surprise survival sweet swift symbol system tactical tale talent target
taste tender terror test thick thunder tight time tired title toxic trace trade trap travel treasure
trick trip triple trouble true trust truth turbo twilight twist type ultimate ultra uncle under unique
unit universe unknown upper urban urgent usual valid value vast velvet venom victory view vintage
virtual vision visual vital vivid void volume wander warning waste weak wealth weird wicked wise wish
wonder work worry worth wrong year yes zero zone
""".split()
# Titles a name may be written with or without ("captain", "lady", "doctor").
TITLE_WORDS = frozenset("""
captain commander general doctor dr professor lady lord sir princess prince queen king miss mister mr mrs ms
saint st sister brother father mother master agent detective officer sergeant lieutenant admiral emperor
empress dame young little old big
""".split())
_VOCABULARY_PARTS = ("subject", "setting", "lighting", "camera", "quality", "composition_words",
                     "figure_modifiers", "subject_focus", "medium", "content_cues")


def _vocabulary_words() -> set[str]:
    """The words of the curated prompt vocabulary's generic parts (not its style list, which
    holds artists' names)."""
    path = Path(__file__).resolve().parents[1] / "prompting" / "data" / "vocabulary.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    words: set[str] = set()
    pending = [data.get(part) for part in _VOCABULARY_PARTS]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            words.update(tokens(item))
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
    return words


GENERIC_WORDS = frozenset(_vocabulary_words() | {w for word in _COMMON_WORDS for w in tokens(word)}
                          | {w for phrases in MEDIA.values() for p in phrases for w in p.split()}
                          | APPEARANCE_WORDS | TITLE_WORDS)


def medium_of_phrase(phrase: str) -> str:
    """The medium a normalised phrase names exactly ("" if none)."""
    return _MEDIUM_BY_PHRASE.get(phrase, "")


_MEDIUM_BY_PHRASE = {p: medium for medium, phrases in MEDIA.items() for p in phrases}
MAX_MEDIUM_WORDS = max(len(p.split()) for p in _MEDIUM_BY_PHRASE)
