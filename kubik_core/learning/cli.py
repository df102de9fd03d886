"""``kubik insights``: what the learning store has learned.

``--json`` prints the object of insights.insights (stable keys: store, generations, feedback,
edits, parameter_acceptance, lora_suggestion_share, best_loras_by_style{style: [{lora,
ratings, mean_rating, wilson}]}, families{family: {generations, ratings, mean_rating, learned}}).
"""
from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("insights", help="statistics of the learning store (ratings, best LoRAs, edits)")
    p.add_argument("--store", default=None,
                   help="store file or SQLAlchemy URL (default: $KUBIK_LEARNING_URL, else "
                        "~/.local/share/kubik/learning.sqlite3)")
    p.add_argument("--top", type=int, default=5, help="LoRAs listed per style (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_insights)


def _cmd_insights(args) -> int:
    from ..cli import CommandError
    from .errors import LearningError
    from .insights import format_insights, insights
    from .store import LearningStore

    from .store import to_url, default_store_location

    _url, path = to_url(args.store or default_store_location())
    if path is not None and not path.exists():
        raise CommandError(f"no learning store at {path} yet: rate images with Kubik Feedback first, "
                           "or pass --store")
    try:
        data = insights(LearningStore(args.store), top=max(1, args.top))
    except LearningError as exc:
        raise CommandError(str(exc)) from exc
    print(json.dumps(data, indent=2) if args.json else format_insights(data))
    return 0
