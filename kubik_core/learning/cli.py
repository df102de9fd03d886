"""``kubik insights``: what the learning store has learned, and ``--reset FAMILY`` to forget it.

``--json`` prints the object of insights.insights (stable keys: store, generations, feedback,
edits, parameter_acceptance, lora_suggestion_share, best_loras_by_style{style: [{lora,
ratings, mean_rating, wilson}]}, families{family: {generations, ratings, mean_rating, learned
{field: value AUTO uses}, learned_details [{field, value, wanted, edits, last_edit, reason}]}}).
``--reset FAMILY`` removes that family's edits, so AUTO and ASSISTED suggest the published
values again; generations, ratings and other families' edits stay. With ``--json`` it prints
``{"reset": FAMILY, "edits_removed": N}``.

``kubik rate ID 1-5`` rates a recorded generation (kubik generate prints each image's id; Kubik
Save Image passes it on); rating it again replaces the rating, as the stars in the editor do.
"""
from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "insights", help="statistics of the learning store (ratings, best LoRAs, learned values)",
        description="What the learning store has learned: ratings, the best LoRAs per style, and "
                    "the sampling values learned from your edits per model family (the value AUTO "
                    "uses, what you chose, from how many edits, when). --reset FAMILY forgets a "
                    "family's learned values.")
    p.add_argument("--store", default=None,
                   help="store file or SQLAlchemy URL (default: $KUBIK_LEARNING_URL, else "
                        "~/.local/share/kubik/learning.sqlite3)")
    p.add_argument("--top", type=int, default=5, help="LoRAs listed per style (default 5)")
    p.add_argument("--reset", metavar="FAMILY", default=None,
                   help="forget the values learned for FAMILY (e.g. sd15): removes its edits and "
                        "nothing else (ratings, generations and other families stay)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_insights)

    rate = subparsers.add_parser(
        "rate", help="rate a recorded image 1-5 (its generation id, as kubik generate prints it)",
        description="Rate an image recorded in the learning store (by kubik generate or Kubik Save "
                    "Image) from 1 to 5 stars; rating it again replaces the rating.")
    rate.add_argument("generation_id", help="the image's generation id")
    rate.add_argument("rating", type=int, help="1 (bad) to 5 (great)")
    rate.add_argument("--store", default=None,
                      help="store file or SQLAlchemy URL (default: $KUBIK_LEARNING_URL, else "
                           "~/.local/share/kubik/learning.sqlite3)")
    rate.set_defaults(func=_cmd_rate)


def _cmd_insights(args) -> int:
    from ..common.commands import CommandError
    from .errors import LearningError
    from .insights import format_insights, insights
    from .store import LearningStore, default_store_location, to_url

    _url, path = to_url(args.store or default_store_location())
    if path is not None and not path.exists():
        raise CommandError(f"no learning store at {path} yet: rate images with Kubik Feedback first, "
                           "or pass --store")
    try:
        store = LearningStore(args.store)
        if args.reset is not None:
            return _reset(store, args.reset, args.json)
        data = insights(store, top=max(1, args.top))
    except LearningError as exc:
        raise CommandError(str(exc)) from exc
    print(json.dumps(data, indent=2) if args.json else format_insights(data))
    return 0


def _cmd_rate(args) -> int:
    from ..common.commands import CommandError
    from .errors import LearningError
    from .store import LearningStore, default_store_location, to_url

    if not 1 <= args.rating <= 5:
        raise CommandError(f"rating {args.rating}: give 1 to 5 stars")
    _url, path = to_url(args.store or default_store_location())
    if path is not None and not path.exists():
        raise CommandError(f"no learning store at {path} yet: generate with kubik generate first, or pass --store")
    try:
        LearningStore(args.store).record_feedback(args.generation_id, args.rating)
    except (LearningError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    print(f"rated {args.generation_id}: {args.rating}/5")
    return 0


def _reset(store, family: str, as_json: bool) -> int:
    from ..common.commands import CommandError

    families = sorted({row["family"] for row in store.rows("edits") if row.get("family")})
    if family not in families:
        known = ", ".join(families) if families else "none"
        raise CommandError(f"--reset: no edits for family {family[:80]!r} in {store.describe()}; "
                           f"families with learned values or edits: {known}")
    removed = store.forget_edits(family)
    if as_json:
        print(json.dumps({"reset": family, "edits_removed": removed}))
    else:
        print(f"forgot what was learned for {family}: removed {removed} edits; ratings, generations "
              "and other families are unchanged")
    return 0
