"""``kubik loras scan``, ``kubik loras recommend`` and ``kubik loras embeddings``.

Documented ``--json`` outputs:

* scan: ``{"files": [{name, path, format, base, variant, arch_source, layout, rank, triggers,
  sha256, autov2, autov3, problems}], "problems": [folder problems], "stats": {files, read,
  cached, removed, seconds}}``
* recommend: ``{"family", "similarity", "picks": [{name, strength_model, strength_clip, score,
  factors{semantic, keyword, popularity, history, relevance}, reason, strength_reason, triggers,
  base, style, kind}], "rejected": [{name, score, reason}], "triggers", "notes", "filtered"}``;
  ``relevance`` (= ``keyword``) is the evidence that the prompt asks for the LoRA (0-1, picked
  from 0.55), ``style`` the medium of a style LoRA, ``kind`` what the LoRA is (style,
  character, person, concept, clothing, pose, detail, speed). With ``--character NAME`` also
  ``"character"`` (its name), ``"prompt"`` (the prompt with the preset's words, as recommended
  for) and ``"kept"`` ([{name, strength_model, strength_clip}], the preset's LoRAs, first in the
  stack); the picks then hold only the LoRAs added.
* embeddings: ``{"files": [EmbeddingEntry.to_dict(): name, path, token, format, base, variant,
  arch_source, vectors, triggers, negative, negative_reason, problems ...], "problems": [folder
  problems], "advice": null or {family, positive, negative, skipped: [{name, token, reason}],
  positive_text, negative_text, notes}}``; advice is given with ``--family``.
"""
from __future__ import annotations

import json
from pathlib import Path

_SCAN_FIELDS = ("name", "path", "format", "base", "variant", "arch_source", "layout", "rank",
                "triggers", "sha256", "autov2", "autov3", "problems")
_PICK_FIELDS = ("name", "strength_model", "strength_clip", "score", "factors", "reason",
                "strength_reason", "triggers", "base", "style", "kind")


def register(subparsers) -> None:
    p = subparsers.add_parser("loras", help="scan a LoRA library, recommend LoRAs for a prompt")
    sub = p.add_subparsers(dest="loras_command", metavar="ACTION")
    sub.required = True

    scan = sub.add_parser("scan", help="list LoRAs with base architecture, trigger words, hashes, problems")
    scan.add_argument("folders", nargs="+", help="LoRA folders (scanned recursively)")
    _cache_args(scan)
    scan.add_argument("--no-hash", action="store_true", help="skip SHA-256 / AutoV2 / AutoV3 hashing")
    scan.add_argument("--json", action="store_true", help="print JSON")
    scan.set_defaults(func=_cmd_scan)

    rec = sub.add_parser("recommend", help="pick LoRAs for a prompt")
    rec.add_argument("prompt", help="the positive prompt")
    rec.add_argument("--library", nargs="+", required=True, metavar="DIR", help="LoRA folders")
    rec.add_argument("--family", default=None, help="model family id (sdxl, sd15, pony, flux_dev...; "
                                                     "see `kubik params --help`)")
    rec.add_argument("--max", type=int, default=3, dest="max_loras", help="most LoRAs to pick (default 3)")
    rec.add_argument("--priority", default="balanced", help="quality, balanced, speed or low_vram")
    rec.add_argument("--block", default="", help="comma-separated names, tags or globs never to pick")
    rec.add_argument("--content", default="safe", help="safe, mature or everything (CivitAI NSFW level)")
    rec.add_argument("--weights", default="", help="factor weights, e.g. semantic=0.4,keyword=0.3,"
                                                   "popularity=0.2,history=0.1")
    rec.add_argument("--store", default=None, help="learning store for the history factor "
                                                   "(file or SQLAlchemy URL; default: none)")
    rec.add_argument("--allow-other-variants", action="store_true",
                     help="also pick LoRAs of another SDXL variant (Pony, Illustrious, plain SDXL) at a "
                          "lower score; by default they are filtered out")
    rec.add_argument("--character", default=None, metavar="NAME",
                     help="a character preset (`kubik characters`): its words join the prompt, its LoRAs are "
                          "kept first, and no other character LoRA is added")
    rec.add_argument("--characters-file", default=None, metavar="FILE",
                     help="the character registry (default as `kubik characters`)")
    rec.add_argument("--seed", type=int, default=0,
                     help="seed that resolves {a|b} and __wildcard__ choices (default 0), as kubik analyze")
    rec.add_argument("--wildcards", metavar="DIR", default=None,
                     help="folder of wildcard .txt files for __name__ in the prompt, as kubik analyze")
    _cache_args(rec)
    rec.add_argument("--json", action="store_true", help="print JSON")
    rec.set_defaults(func=_cmd_recommend)

    emb = sub.add_parser("embeddings", help="list textual-inversion embeddings (base, triggers, negative "
                                            "or not) and propose them for a prompt")
    emb.add_argument("folders", nargs="+", help="embedding folders (ComfyUI's models/embeddings)")
    emb.add_argument("--family", default=None, help="model family id (sd15, sdxl, pony ...): propose "
                                                    "embeddings for it")
    emb.add_argument("--prompt", default="", help="the positive prompt (positive embeddings are proposed "
                                                  "when it names them)")
    emb.add_argument("--max-negative", type=int, default=2, help="most negative embeddings to propose "
                                                                 "(default 2)")
    emb.add_argument("--json", action="store_true", help="print JSON")
    emb.set_defaults(func=_cmd_embeddings)


def _cache_args(p) -> None:
    p.add_argument("--cache", default=None, help="index cache file (default: ~/.cache/kubik/lora_index.json)")
    p.add_argument("--no-cache", action="store_true", help="read every file, keep no index")


def _scan(args, progress=None):
    from ..common.commands import CommandError
    from .library import default_cache_path, scan_library

    missing = [f for f in (getattr(args, "folders", None) or args.library) if not Path(f).is_dir()]
    if missing:
        raise CommandError(f"not a folder: {', '.join(missing)}")
    cache = None if args.no_cache else Path(args.cache) if args.cache else default_cache_path()
    return scan_library(getattr(args, "folders", None) or args.library, cache_path=cache, progress=progress)


def _cmd_scan(args) -> int:
    library = _scan(args)
    if not args.no_hash and library.missing_hashes():
        from tqdm import tqdm

        bar = tqdm(total=len(library.missing_hashes()), desc="hashing", unit="file",
                   disable=args.json, leave=False)
        library.compute_hashes(progress=lambda done, total: bar.update(1))
        bar.close()
    entries = library.sorted_entries()
    if args.json:
        print(json.dumps({"files": [{k: getattr(e, k) for k in _SCAN_FIELDS} for e in entries],
                          "problems": library.problems,
                          "stats": vars(library.stats)}, indent=2))
        return 0
    for e in entries:
        arch = e.base + (f" ({e.variant})" if e.variant else "")
        triggers = ", ".join(e.triggers[:5]) or "-"
        print(f"{e.name}\n  base {arch} [{e.arch_source or '-'}], {e.layout or e.format}, rank {e.rank or '-'}"
              f"\n  triggers: {triggers}\n  sha256 {e.sha256 or '-'}  AutoV2 {e.autov2 or '-'}  "
              f"AutoV3 {e.autov3 or '-'}")
        for problem in e.problems:
            print(f"  problem: {problem}")
    for problem in library.problems:
        print(f"problem: {problem}")
    s = library.stats
    print(f"{s.files} LoRA files ({s.read} read, {s.cached} from the cache) in {s.seconds:.2f} s")
    return 0


def _cmd_recommend(args) -> int:
    from ..common.commands import CommandError
    from ..prompting import analyze_prompt
    from .recommend import LoraIndex, recommend

    weights = {}
    for part in filter(None, (p.strip() for p in args.weights.split(","))):
        key, _, value = part.partition("=")
        try:
            weights[key.strip()] = float(value)
        except ValueError:
            raise CommandError(f"--weights: {part!r} is not name=number") from None
    history = None
    if args.store:
        from ..learning import LearningError, LearningStore, lora_history_scores
        from ..learning.store import to_url

        _url, path = to_url(args.store)
        if path is not None and not path.exists():
            raise CommandError(f"--store: no learning store at {path}")
        try:
            history = lora_history_scores(LearningStore(args.store))
        except LearningError as exc:
            raise CommandError(str(exc)) from exc
    if args.wildcards is not None and not Path(args.wildcards).is_dir():
        raise CommandError(f"--wildcards: no folder {args.wildcards!r}; give the folder that "
                           "holds your wildcard .txt files")
    character = _character(args) if args.character is not None else None
    prompt = character.positive_prompt(args.prompt) if character is not None else args.prompt
    library = _scan(args)
    try:
        analysis = analyze_prompt(prompt, seed=args.seed, wildcards_dir=args.wildcards)
        rec = recommend(LoraIndex(library), analysis, family=args.family, max_loras=args.max_loras,
                        priority=args.priority, blocklist=args.block, weights=weights,
                        history=history, content=args.content,
                        allow_other_variants=args.allow_other_variants,
                        base=character.stack() if character is not None else None)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    if args.json:
        out = {"family": rec.family, "similarity": rec.similarity,
               "picks": [{k: getattr(c, k) for k in _PICK_FIELDS} for c in rec.picks],
               "rejected": [{"name": c.name, "score": c.score, "reason": c.reason} for c in rec.rejected],
               "triggers": rec.trigger_text(), "notes": rec.notes, "filtered": rec.filtered}
        if character is not None:
            out.update(character=character.name, prompt=prompt,
                       kept=[{"name": i.name, "strength_model": i.strength_model,
                              "strength_clip": i.strength_clip} for i in rec.base.items])
        print(json.dumps(out, indent=2))
        return 0
    print(rec.explain("detailed"))
    if rec.picks:
        print(f"trigger words: {rec.trigger_text() or '-'}")
    return 0


def _character(args):
    """The --character preset from the registry (or one of the examples that ship with the pack)."""
    from ..characters import RegistryError, example, load_registry, registry_path
    from ..common.commands import CommandError

    found = example(args.character)
    if found is not None:
        return found
    path = Path(args.characters_file).expanduser() if args.characters_file else registry_path(None)
    try:
        return load_registry(path).get(args.character)
    except RegistryError as exc:
        raise CommandError(f"--character: {exc}") from None


def _cmd_embeddings(args) -> int:
    from ..common.commands import CommandError
    from ..prompting import analyze_prompt
    from .embeddings import recommend_embeddings, scan_embeddings

    missing = [f for f in args.folders if not Path(f).is_dir()]
    if missing:
        raise CommandError(f"not a folder: {', '.join(missing)}")
    if args.max_negative < 0:
        raise CommandError("--max-negative: give 0 or more")
    library = scan_embeddings(args.folders)
    advice = None
    if args.family:
        try:
            analysis = analyze_prompt(args.prompt) if args.prompt.strip() else None
            advice = recommend_embeddings(library.entries, analysis, args.family, args.max_negative)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
    if args.json:
        print(json.dumps({"files": [e.to_dict() for e in library.entries], "problems": library.problems,
                          "advice": advice.to_dict() if advice else None}, indent=2))
        return 0
    for e in library.entries:
        arch = e.base + (f" ({e.variant})" if e.variant else "")
        kind = f"negative ({e.negative_reason})" if e.negative else "positive"
        print(f"{e.token}\n  base {arch} [{e.arch_source or '-'}], {e.format}, {e.vectors} vectors, {kind}"
              f"\n  triggers: {', '.join(e.triggers[:5]) or '-'}")
        for problem in e.problems:
            print(f"  problem: {problem}")
    for problem in library.problems:
        print(f"problem: {problem}")
    print(f"{len(library.entries)} embedding files in {library.seconds:.2f} s")
    if advice is not None:
        print(f"\nFor {advice.family}:\n{advice.explain('detailed')}")
        print(f"positive: {advice.positive_text or '-'}\nnegative: {advice.negative_text or '-'}")
    return 0
